/**
 * AUDIT_DIR deleted under a running proxy: the journal notices within its check interval, says so
 * on /healthz, and the records of later exchanges land in the directory made again.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { readJournal, recordOf } from './support/audit.ts';
import { until } from './support/net.ts';
import { startTestProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';

interface Health {
  audit: { journal: { writable: boolean; reopened: number; dropped: number } };
}

test('rm -rf AUDIT_DIR while running: noticed, counted on /healthz, later records in the new directory', async () => {
  const upstream = await startUpstream();
  const parent = await mkdtemp(join(tmpdir(), 'audit-vanished-test-'));
  const dir = join(parent, 'audit');
  const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: dir });
  const chat = async (): Promise<string> => {
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-vanished' },
    });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    return String(res.headers['x-proxy-request-id']);
  };
  const health = async (): Promise<Health> => (await (await request(`${proxy.adminUrl}/healthz`)).body.json()) as Health;
  try {
    await recordOf(proxy, await chat());
    await rm(dir, { recursive: true, force: true });
    // The journal checks once a second.
    await until(async () => (await health()).audit.journal.reopened === 1, 5000, 'the journal to notice');
    const after = await chat();
    const record = await recordOf(proxy, after);
    assert.equal(record._id, after);
    assert.ok(existsSync(dir), 'the directory is made again');
    assert.deepEqual((await readJournal(dir)).map((r) => r._id), [after], 'only what came after is in the new directory');
    const { journal } = (await health()).audit;
    assert.equal(journal.writable, true);
    assert.equal(journal.dropped, 0);
  } finally {
    await proxy.close();
    await upstream.close();
    await rm(parent, { recursive: true, force: true });
  }
});
