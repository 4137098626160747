/** Graceful shutdown of the real process: SIGTERM drains in-flight streams, /readyz turns 503, then exit 0. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { request } from 'undici';
import { startUpstream } from './support/upstream.ts';
import { freePort } from './support/net.ts';

async function waitReady(adminUrl: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await request(`${adminUrl}/readyz`).then(
      async (r) => (await r.body.dump(), r.statusCode === 200),
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('proxy never became ready');
}

function withoutMongo(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { MONGODB_URI: _uri, AUDIT_TTL_DAYS: _ttl, ...rest } = env;
  return rest;
}

/** The real proxy process, audit off, with the given drain grace. */
async function startProcess(upstreamUrl: string, graceMs: number): Promise<{ child: ChildProcess; port: number; adminPort: number }> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    // Without the test run's MONGODB_URI: with audit off it would be refused (exit 2).
    env: { ...withoutMongo(process.env), PORT: String(port), ADMIN_PORT: String(adminPort), UPSTREAM_URL: upstreamUrl, AUDIT_ENABLED: 'false', SHUTDOWN_GRACE_MS: String(graceMs) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return { child, port, adminPort };
}

test('SIGTERM lets an in-flight stream finish, refuses readiness while draining, then exits 0', async () => {
  const upstream = await startUpstream();
  const { child, port, adminPort } = await startProcess(upstream.url, 10_000);
  const exited = once(child, 'exit');
  try {
    await waitReady(`http://127.0.0.1:${adminPort}`);
    const res = await request(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-chunks': '8', 'x-test-chunk-delay-ms': '100' },
    });
    const body = res.body.text();
    child.kill('SIGTERM');
    let draining = false;
    for (let i = 0; i < 100 && !draining; i++) {
      const ready = await request(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null);
      if (ready === null) break;
      draining = ready.statusCode === 503;
      await ready.body.dump();
    }
    assert.ok(draining, '/readyz turned 503 while draining');
    assert.match(await body, /data: \[DONE\]/, 'the in-flight stream completed');
    const [code] = (await exited) as [number];
    assert.equal(code, 0);
    await assert.rejects(request(`http://127.0.0.1:${port}/v1/models`), /ECONNREFUSED/);
  } finally {
    child.kill('SIGKILL');
    await upstream.close();
  }
});

test('streams still running when the grace period ends are cut', async () => {
  const upstream = await startUpstream();
  const { child, port, adminPort } = await startProcess(upstream.url, 300);
  const exited = once(child, 'exit');
  try {
    await waitReady(`http://127.0.0.1:${adminPort}`);
    const res = await request(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-chunks': '1000', 'x-test-chunk-delay-ms': '50' },
    });
    const body = res.body.text();
    child.kill('SIGTERM');
    await assert.rejects(body);
    const [code] = (await exited) as [number];
    assert.equal(code, 0);
  } finally {
    child.kill('SIGKILL');
    await upstream.close();
  }
});
