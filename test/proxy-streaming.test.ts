/** Streaming: SSE events leave as they arrive; large bodies flow both ways with flat memory. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { patternBytes, startUpstream, type Upstream } from './support/upstream.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';

let upstream: Upstream;
let proxy: TestProxy;

before(async () => {
  upstream = await startUpstream();
  proxy = await startTestProxy({ UPSTREAM_URL: upstream.url });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

test('each SSE event reaches the client before the next one leaves upstream', async () => {
  const gapMs = 150;
  const res = await request(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
    headers: { 'content-type': 'application/json', 'x-test-chunks': '4', 'x-test-chunk-delay-ms': String(gapMs) },
  });
  assert.match(String(res.headers['content-type']), /^text\/event-stream/);
  assert.equal(res.headers['content-encoding'], undefined, 'the proxy adds no compression');
  const arrivals: number[] = [];
  let text = '';
  for await (const chunk of res.body) {
    const events = (chunk as Buffer).toString('utf8').split('\n\n').filter((e) => e.startsWith('data: '));
    for (const _event of events) arrivals.push(performance.now());
    text += (chunk as Buffer).toString('utf8');
  }
  assert.match(text, /data: \[DONE\]\n\n$/);
  // Events paced 150 ms apart upstream must arrive spread out, not in one burst at the end.
  const spread = (arrivals.at(-1) ?? 0) - (arrivals[0] ?? 0);
  assert.ok(spread >= 3 * gapMs * 0.8, `events arrived within ${spread.toFixed(0)} ms: held back`);
});

test('a large download streams through with the right bytes', async () => {
  const size = 48 * 1024 * 1024;
  const res = await request(`${proxy.url}/download?bytes=${size}`);
  assert.equal(res.headers['content-length'], String(size));
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of res.body) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  assert.equal(bytes, size);
  assert.equal(hash.digest('hex'), createHash('sha256').update(patternBytes(size)).digest('hex'));
});

test('a large chunked upload streams through to upstream intact', async () => {
  const size = 48 * 1024 * 1024;
  const block = Buffer.alloc(64 * 1024, 0x5a);
  const body = Readable.from(
    (function* () {
      for (let sent = 0; sent < size; sent += block.length) yield block;
    })(),
  );
  const res = await request(`${proxy.url}/sink`, { method: 'POST', body });
  const result = (await res.body.json()) as { bytes: number; sha256: string };
  assert.equal(result.bytes, size);
  const expected = createHash('sha256');
  for (let sent = 0; sent < size; sent += block.length) expected.update(block);
  assert.equal(result.sha256, expected.digest('hex'));
});

test('many concurrent streams share the upstream pool without a connection cap', async () => {
  const streams = Array.from({ length: 40 }, async () => {
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-chunks': '3', 'x-test-chunk-delay-ms': '100' },
    });
    return res.body.text();
  });
  const started = performance.now();
  const bodies = await Promise.all(streams);
  // With a cap, 40 streams of ~300 ms would queue; without one they run side by side.
  assert.ok(performance.now() - started < 3000);
  for (const body of bodies) assert.match(body, /\[DONE\]/);
});

test('UPSTREAM_MAX_CONNECTIONS caps connections per upstream: extra streams wait their turn', async () => {
  const capped = await startTestProxy({ UPSTREAM_URL: upstream.url, UPSTREAM_MAX_CONNECTIONS: '1' });
  try {
    const stream = async (): Promise<number> => {
      const res = await request(`${capped.url}/v1/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
        headers: { 'content-type': 'application/json', 'x-test-chunks': '3', 'x-test-chunk-delay-ms': '100' },
      });
      await res.body.text();
      return performance.now();
    };
    const started = performance.now();
    const ends = await Promise.all([stream(), stream()]);
    // One connection: the second stream starts only once the first has ended (~3 x 100 ms each).
    assert.ok(Math.max(...ends) - started >= 550, `both done in ${(Math.max(...ends) - started).toFixed(0)} ms`);
    assert.ok(Math.abs((ends[0] ?? 0) - (ends[1] ?? 0)) >= 250, 'the streams ran one after the other');
  } finally {
    await capped.close();
  }
});

test("an event stream's head reaches the client at once, before a slow first event", async () => {
  const slow = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.flushHeaders();
    const timer = setTimeout(() => res.end('data: {"late":true}\n\ndata: [DONE]\n\n'), 800);
    res.once('close', () => clearTimeout(timer));
  });
  await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
  const p = await startTestProxy({ UPSTREAM_URL: `http://127.0.0.1:${(slow.address() as AddressInfo).port}` });
  try {
    const started = performance.now();
    const res = await request(`${p.url}/v1/chat/completions`, { method: 'POST', body: '{"stream":true}' });
    const headAfter = performance.now() - started;
    assert.ok(headAfter < 500, `head after ${headAfter.toFixed(0)} ms`);
    assert.match(await res.body.text(), /\[DONE\]/);
  } finally {
    await p.close();
    await new Promise<void>((resolve) => slow.close(() => resolve()));
  }
});
