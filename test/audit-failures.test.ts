/** The audit trail under failure: an unwritable or full disk (both modes), and a SIGKILL mid-load. */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { Journal } from '../src/audit/journal/journal.ts';
import { readJournal, waitForRecords, waitForWritable } from './support/audit.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { freePort, until } from './support/net.ts';

let upstream: Upstream;

before(async () => {
  upstream = await startUpstream();
});

after(async () => {
  await upstream.close();
});

async function chat(proxy: TestProxy, bodyBytes = 200): Promise<{ status: number; code: string | null }> {
  const res = await request(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x'.repeat(bodyBytes) }] }),
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-disk-full' },
  });
  const body = (await res.body.json()) as { error?: { code: string } };
  return { status: res.statusCode, code: body.error?.code ?? null };
}

async function readyStatus(proxy: TestProxy): Promise<number> {
  const res = await request(`${proxy.adminUrl}/readyz`);
  await res.body.dump();
  return res.statusCode;
}

/** An AUDIT_DIR that cannot exist: its parent is a regular file (ENOTDIR). */
function blockedDir(): { dir: string; unblock: () => void } {
  const parent = join(mkdtempSync(join(tmpdir(), 'audit-blocked-')), 'parent');
  writeFileSync(parent, 'not a directory');
  return {
    dir: join(parent, 'audit'),
    unblock: () => {
      rmSync(parent);
      mkdirSync(parent);
    },
  };
}

describe('journal unwritable', () => {
  test('by default the proxy keeps proxying and counts what it could not record', async () => {
    const blocked = blockedDir();
    const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: blocked.dir });
    try {
      const journal = proxy.runtime.journal as Journal;
      assert.equal(journal.writable, false);
      for (let i = 0; i < 3; i++) assert.deepEqual(await chat(proxy), { status: 200, code: null });
      await until(() => journal.stats.dropped === 3);
      assert.equal(await readyStatus(proxy), 200);
      const health = (await (await request(`${proxy.adminUrl}/healthz`)).body.json()) as { audit: { journal: { writable: boolean; dropped: number } } };
      assert.equal(health.audit.journal.writable, false);
      assert.equal(health.audit.journal.dropped, 3);
      blocked.unblock();
      await waitForWritable(journal, true);
      assert.equal((await chat(proxy)).status, 200);
      // Appended: the 3 dropped and this one, which the journal commits.
      assert.equal((await waitForRecords(proxy, 4)).length, 1);
      assert.equal(journal.stats.committed, 1);
    } finally {
      await proxy.close();
    }
  });

  test('AUDIT_REQUIRED=true fails closed with 503 until the journal can write again', async () => {
    const blocked = blockedDir();
    const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: blocked.dir, AUDIT_REQUIRED: 'true' });
    try {
      const before = upstream.requests.length;
      assert.deepEqual(await chat(proxy), { status: 503, code: 'audit_unavailable' });
      assert.equal(upstream.requests.length, before, 'nothing was forwarded');
      assert.equal(await readyStatus(proxy), 503);
      blocked.unblock();
      await waitForWritable(proxy.runtime.journal as Journal, true);
      assert.deepEqual(await chat(proxy), { status: 200, code: null });
      assert.equal(await readyStatus(proxy), 200);
    } finally {
      await proxy.close();
    }
  });
});

describe('disk full (a real tmpfs)', () => {
  let mountPoint: string | null = null;

  before(() => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-tmpfs-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir], { stdio: 'pipe' });
      mountPoint = dir;
    } catch {
      mountPoint = null;
    }
  });

  after(() => {
    if (mountPoint !== null) execFileSync('umount', [mountPoint]);
  });

  for (const required of [false, true]) {
    test(`a full disk with AUDIT_REQUIRED=${required}`, async (t) => {
      if (mountPoint === null) return t.skip('cannot mount a tmpfs here (needs root): disk-full covered by the unwritable-dir tests');
      const dir = join(mountPoint, `audit-${required}`);
      const filler = join(mountPoint, `filler-${required}`);
      const proxy = await startTestProxy({
        UPSTREAM_URL: upstream.url,
        AUDIT_ENABLED: 'true',
        AUDIT_DIR: dir,
        AUDIT_REQUIRED: String(required),
        AUDIT_FSYNC: 'always',
      });
      try {
        const journal = proxy.runtime.journal as Journal;
        writeFileSync(filler, Buffer.alloc(200 * 1024));
        let refused = 0;
        for (let i = 0; i < 20 && journal.writable; i++) {
          const result = await chat(proxy, 20_000);
          if (result.status === 503) refused++;
          await journal.flush();
        }
        assert.equal(journal.writable, false, 'the disk filled up');
        assert.ok(journal.stats.dropped >= 1);
        const next = await chat(proxy);
        assert.equal(next.status, required ? 503 : 200);
        assert.equal(refused, 0, 'requests are only refused once the journal is known unwritable');
        rmSync(filler);
        await waitForWritable(journal, true);
        assert.equal((await chat(proxy)).status, 200);
      } finally {
        await proxy.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

function startChild(dir: string, port: number, adminPort: number): ReturnType<typeof spawn> {
  return spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, PORT: String(port), ADMIN_PORT: String(adminPort), UPSTREAM_URL: upstream.url, AUDIT_DIR: dir, AUDIT_FSYNC: 'always', METRICS_ENABLED: 'false' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

async function waitReady(adminPort: number): Promise<void> {
  await until(async () => {
    const res = await request(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null);
    await res?.body.dump();
    return res?.statusCode === 200;
  }, 20_000);
}

test('SIGKILL mid-load, then restart: the journal reopens, every line parses, nothing completed is lost but the last moments', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'audit-kill-'));
  const [port, adminPort] = [await freePort(), await freePort()];
  let child = startChild(dir, port, adminPort);
  try {
    await waitReady(adminPort);
    const completed: string[] = [];
    let stop = false;
    const worker = async (): Promise<void> => {
      while (!stop) {
        const res = await request(`http://127.0.0.1:${port}/v1/chat/completions`, {
          method: 'POST',
          body: JSON.stringify({ model: 'gpt-4o', messages: [] }),
          headers: { 'content-type': 'application/json' },
        }).catch(() => null);
        if (res === null) return;
        await res.body.dump().catch(() => undefined);
        completed.push(String(res.headers['x-proxy-request-id']));
      }
    };
    const workers = Array.from({ length: 8 }, () => worker());
    await until(() => completed.length >= 300, 30_000);
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    stop = true;
    await Promise.all(workers);

    child = startChild(dir, port, adminPort);
    await waitReady(adminPort);
    // The restart cut the line the kill tore: every segment ends with a whole line.
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ndjson'))) {
      const text = readFileSync(join(dir, file), 'utf8');
      assert.ok(text === '' || text.endsWith('\n'), `${file} ends in a torn line`);
    }
    const records = await readJournal(dir);
    const ids = new Set(records.map((r) => r._id));
    assert.equal(ids.size, records.length, 'no record twice');
    const missing = completed.filter((id) => !ids.has(id));
    // Records are appended just after their response ends: the last few in flight may be lost.
    assert.ok(missing.length <= 16, `${missing.length} completed exchanges missing from the journal`);
    assert.ok(records.length >= completed.length - 16);
  } finally {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }
});
