/**
 * MEMORY_BUDGET_BYTES: what the proxy holds for exchanges (capture copies, STREAM_USAGE=inject
 * buffers, unwritten records) stays within it. Past it the capture keeps no body and says why,
 * and inject refuses with an OpenAI-shaped 503 before anything is forwarded.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { MemoryBudget } from '../src/memory-budget.ts';
import { recordOf } from './support/audit.ts';
import { until } from './support/net.ts';
import { startTestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { removeTempDirs, tempDir } from './support/temp-dirs.ts';

const KIB = 1024;
const MIB = 1024 * KIB;
let upstream: Upstream;

before(async () => {
  upstream = await startUpstream();
});

after(async () => {
  await upstream.close();
  await removeTempDirs();
});

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('memory budget', () => {
  test('reservations fit or are refused and counted; forced ones count against the others', () => {
    const budget = new MemoryBudget(100);
    const capture = budget.account('capture');
    const journal = budget.account('journal');
    assert.equal(capture.tryReserve(60), true);
    assert.equal(capture.tryReserve(41), false, 'past the limit');
    journal.reserve(50);
    assert.equal(capture.tryReserve(1), false, 'a line that could not be refused still counts');
    capture.release(60);
    journal.release(50);
    assert.deepEqual(budget.stats, {
      limitBytes: 100, usedBytes: 0, peakBytes: 110, held: { capture: 0, inject: 0, journal: 0 }, refused: { capture: 2, inject: 0, journal: 0 },
    });
  });

  test('a body captured once the budget is spent by stalled uploads is omitted, with the reason; bytes and sha256 still whole', async () => {
    const dir = await tempDir('memory-budget-test-');
    const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: dir, MEMORY_BUDGET_BYTES: String(MIB) });
    // An upload that sends 900 KiB of its 1 MiB and stalls: its capture holds what it has kept.
    const stalledBody = Buffer.alloc(MIB, 'a');
    const stalled = http.request(`${proxy.url}/sink`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', 'content-length': String(stalledBody.length) },
    });
    const stalledResponse = new Promise<http.IncomingMessage>((resolve, reject) => stalled.once('response', resolve).once('error', reject));
    try {
      stalled.write(stalledBody.subarray(0, 900 * KIB));
      await until(() => (proxy.runtime.memory?.stats.held.capture ?? 0) >= 900 * KIB, 5000, 'the stalled upload to be captured');

      const body = Buffer.alloc(200 * KIB, 'b');
      const res = await request(`${proxy.url}/sink`, { method: 'POST', body, headers: { 'content-type': 'text/plain' } });
      await res.body.dump();
      assert.equal(res.statusCode, 200, 'the exchange itself is not refused');
      const record = await recordOf(proxy, String(res.headers['x-proxy-request-id']));
      assert.equal(record.request.bodyEncoding, 'omitted');
      assert.equal(record.request.omittedReason, 'memory_budget');
      assert.equal(record.request.body, null);
      assert.equal(record.request.bytes, body.length);
      assert.equal(record.request.sha256, sha256(body));

      stalled.end(stalledBody.subarray(900 * KIB));
      const done = await stalledResponse;
      done.resume();
      const first = await recordOf(proxy, String(done.headers['x-proxy-request-id']));
      assert.equal(first.request.bodyEncoding, 'text', 'the upload that held the budget kept its body');
      assert.equal(first.request.omittedReason, undefined);
      assert.equal(first.request.body, stalledBody.toString());
      await until(() => proxy.runtime.memory.stats.usedBytes === 0, 5000, 'the budget to be given back');

      const health = (await (await request(`${proxy.adminUrl}/healthz`)).body.json()) as { memory: { limitBytes: number; refused: { capture: number } } };
      assert.equal(health.memory.limitBytes, MIB);
      assert.ok(health.memory.refused.capture >= 1);
    } finally {
      stalled.destroy();
      await proxy.close();
    }
  });

  test('STREAM_USAGE=inject past the budget: 503 proxy_overloaded, OpenAI-shaped, nothing forwarded; within it, injected', async () => {
    const dir = await tempDir('memory-budget-test-');
    const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, STREAM_USAGE: 'inject', MEMORY_BUDGET_BYTES: String(MIB), AUDIT_ENABLED: 'true', AUDIT_DIR: dir });
    try {
      const before = upstream.requests.length;
      const big = JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'x'.repeat(2 * MIB) }] });
      const res = await request(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        body: big,
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-budget' },
      });
      assert.equal(res.statusCode, 503);
      assert.equal(res.headers['content-type'], 'application/json');
      const error = (await res.body.json()) as { error: Record<string, unknown> };
      assert.deepEqual(Object.keys(error.error).sort(), ['code', 'message', 'param', 'type']);
      assert.equal(error.error.code, 'proxy_overloaded');
      assert.equal(error.error.type, 'service_unavailable');
      assert.equal(error.error.param, null);
      assert.equal(upstream.requests.length, before, 'nothing reached upstream');
      const record = await recordOf(proxy, String(res.headers['x-proxy-request-id']));
      assert.deepEqual([record.outcome, record.error?.type, record.response.status], ['rejected', 'proxy_overloaded', 503]);
      await until(() => proxy.runtime.memory.stats.usedBytes === 0, 5000, 'what was buffered to be given back');

      const small = await request(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-budget' },
      });
      await small.body.dump();
      assert.equal(small.statusCode, 200);
      const forwarded = JSON.parse((upstream.requests.at(-1)?.body ?? Buffer.alloc(0)).toString()) as { stream_options?: unknown };
      assert.deepEqual(forwarded.stream_options, { include_usage: true });
      await until(() => proxy.runtime.memory.stats.usedBytes === 0, 5000, 'the budget to be given back');
    } finally {
      await proxy.close();
    }
  });
});
