/** Every failure has a defined outcome for the client: upstream down, slow, broken; client gone; bad HTTP. */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { freePort, until } from './support/net.ts';

let upstream: Upstream;
let proxy: TestProxy;

before(async () => {
  upstream = await startUpstream();
  proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, UPSTREAM_TIMEOUT_MS: '400' });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

interface OpenAIErrorBody {
  error: { message: string; type: string; param: null; code: string };
}

async function errorOf(res: Awaited<ReturnType<typeof request>>): Promise<OpenAIErrorBody['error']> {
  assert.equal(res.headers['content-type'], 'application/json');
  const body = (await res.body.json()) as OpenAIErrorBody;
  assert.equal(body.error.param, null);
  return body.error;
}

describe('upstream failures', () => {
  test('unreachable upstream: 502 with an OpenAI-shaped error', async () => {
    const p = await startTestProxy({ UPSTREAM_URL: `http://127.0.0.1:${await freePort()}` });
    try {
      const res = await request(`${p.url}/v1/models`);
      assert.equal(res.statusCode, 502);
      const error = await errorOf(res);
      assert.equal(error.code, 'upstream_unreachable');
      assert.match(error.message, /ECONNREFUSED/);
      assert.ok(res.headers['x-proxy-request-id']);
    } finally {
      await p.close();
    }
  });

  test('unresolvable upstream host: 502', async () => {
    const p = await startTestProxy({ UPSTREAM_URL: 'http://no-such-host.invalid' });
    try {
      const res = await request(`${p.url}/v1/models`);
      assert.equal(res.statusCode, 502);
      assert.equal((await errorOf(res)).code, 'upstream_unreachable');
    } finally {
      await p.close();
    }
  });

  test('no byte from upstream within UPSTREAM_TIMEOUT_MS: 504, and the upstream request is abandoned', async () => {
    const aborted = upstream.aborted;
    const res = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', body: '{}', headers: { 'x-test-hang': 'headers' } });
    assert.equal(res.statusCode, 504);
    assert.equal((await errorOf(res)).code, 'upstream_timeout');
    await upstream.waitForAborted(aborted + 1);
  });

  test('upstream resets before answering: 502', async () => {
    const res = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', body: '{}', headers: { 'x-test-reset': 'before-headers' } });
    assert.equal(res.statusCode, 502);
    assert.equal((await errorOf(res)).code, 'upstream_unreachable');
  });

  test('upstream breaks mid-response: the client connection breaks too, never a clean end', async () => {
    const outcome = await rawOutcome(proxy.url, '/v1/chat/completions', { 'x-test-reset': 'mid-body' });
    assert.equal(outcome.status, 200);
    assert.ok(outcome.bytes > 0, 'the first part of the body arrived');
    assert.equal(outcome.ended, 'aborted');
  });

  test('upstream stalls mid-response past the timeout: the client connection is cut', async () => {
    const outcome = await rawOutcome(proxy.url, '/v1/chat/completions', { 'x-test-hang': 'body' });
    assert.equal(outcome.status, 200);
    assert.equal(outcome.ended, 'aborted');
  });
});

describe('client disconnects', () => {
  test('mid-stream: the upstream request is aborted at once', async () => {
    const aborted = upstream.aborted;
    const controller = new AbortController();
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-chunks': '1000', 'x-test-chunk-delay-ms': '20' },
      signal: controller.signal,
    });
    for await (const _chunk of res.body) {
      controller.abort();
      break;
    }
    await upstream.waitForAborted(aborted + 1);
  });

  test('while waiting for the response head: the upstream request is aborted', async () => {
    const aborted = upstream.aborted;
    const controller = new AbortController();
    const pending = request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: '{}',
      headers: { 'x-test-delay-ms': '5000' },
      signal: controller.signal,
    });
    await until(() => upstream.requests.some((r) => r.headers['x-test-delay-ms'] === '5000'));
    controller.abort();
    await assert.rejects(pending);
    await upstream.waitForAborted(aborted + 1);
  });

  test('mid-upload: the upstream request is aborted and nothing leaks', async () => {
    const aborted = upstream.aborted;
    const url = new URL(proxy.url);
    const socket = net.connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n');
    socket.write(Buffer.alloc(200_000));
    await until(() => upstream.openSockets() > 0 && upstream.requests.length > 0);
    socket.destroy();
    await upstream.waitForAborted(aborted + 1);
  });
});

describe('malformed HTTP is rejected by the proxy, never forwarded', () => {
  test('oversized headers: 431', async () => {
    const res = await rawExchange(proxy.url, `GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    assert.match(res, /^HTTP\/1.1 431 /);
    assert.match(res, /"type":"invalid_request_error"/);
  });

  test('Content-Length together with Transfer-Encoding: 400', async () => {
    const before = upstream.requests.length;
    const res = await rawExchange(
      proxy.url,
      'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    );
    assert.match(res, /^HTTP\/1.1 400 /);
    assert.equal(upstream.requests.length, before);
  });

  test('bad chunked encoding: 400, and upstream never receives a complete request', async () => {
    const before = upstream.requests.length;
    const res = await rawExchange(proxy.url, 'POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n');
    assert.match(res, /^HTTP\/1.1 400 /);
    assert.equal(upstream.requests.length, before);
  });
});

/** Sends raw bytes and returns everything the proxy answers until it closes the connection. */
function rawExchange(base: string, bytes: string): Promise<string> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => socket.end(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', reject);
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer')));
  });
}

/** How a streamed response ended for a node:http client: a clean `end`, or `aborted`. */
function rawOutcome(base: string, path: string, headers: Record<string, string>): Promise<{ status: number; bytes: number; ended: 'end' | 'aborted' }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method: 'POST', headers }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, ended: 'end' }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, bytes, ended: 'aborted' }));
    });
    req.on('error', reject);
    req.end('{"stream":true}');
  });
}
