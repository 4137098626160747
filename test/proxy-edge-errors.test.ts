/**
 * Requests the proxy refuses at its edge get an OpenAI-shaped answer and an exact record: a
 * non-WebSocket upgrade, a bad Expect, a missing Host, CONNECT, a bad chunk mid-body; a
 * WebSocket refusal's body is kept; a stream cut by the shutdown is the shutdown's.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { WebSocket } from 'ws';
import type { AuditRecord } from '../src/audit/record/record.ts';
import { recordOf } from './support/audit.ts';
import { until } from './support/net.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

let upstream: Upstream;
let proxy: TestProxy;

before(async () => {
  upstream = await startUpstream();
  proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: mkdtempSync(join(tmpdir(), 'edge-')),
    METRICS_ENABLED: 'true',
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  error: { message: string; type: string; param: null; code: string };
}

/** Parses the proxy's one answer on a connection it closed after. */
function parseAnswer(text: string): RawAnswer {
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end !== -1, `a whole head in ${JSON.stringify(text)}`);
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  assert.equal(headers['content-type'], 'application/json', text);
  // Read as latin1: one character per byte.
  const body = text.slice(end + 4);
  assert.equal(body.length, Number(headers['content-length']));
  const { error } = JSON.parse(Buffer.from(body, 'latin1').toString('utf8')) as { error: RawAnswer['error'] };
  assert.equal(error.param, null);
  assert.ok(error.message.length > 0 && error.type.length > 0);
  return { status: Number(statusLine.split(' ')[1]), headers, error };
}

/** Sends raw bytes (in parts, each after `next` resolves) and returns all the proxy answers until it closes. */
async function rawExchange(bytes: string, more?: { after: () => Promise<void>; bytes: string }): Promise<string> {
  const url = new URL(proxy.url);
  const socket = net.connect(Number(url.port), url.hostname);
  socket.on('error', () => undefined);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  const closed = once(socket, 'close');
  await once(socket, 'connect');
  socket.write(bytes);
  if (more !== undefined) {
    await more.after();
    socket.write(more.bytes);
  }
  const timer = setTimeout(() => socket.destroy(new Error('no answer')), 5000);
  await closed;
  clearTimeout(timer);
  return Buffer.concat(chunks).toString('latin1');
}

async function recordFor(answer: RawAnswer): Promise<AuditRecord> {
  const id = answer.headers['x-proxy-request-id'];
  assert.ok(id, 'the answer carries its record id');
  return recordOf(proxy, id);
}

test('Upgrade: h2c gets an OpenAI-shaped 400, recorded as rejected with status 400', async () => {
  const answer = parseAnswer(
    await rawExchange(
      'GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n',
    ),
  );
  assert.equal(answer.status, 400);
  assert.equal(answer.error.code, 'unsupported_upgrade');
  const record = await recordFor(answer);
  assert.equal(record.outcome, 'rejected');
  assert.equal(record.response.status, 400);
  assert.equal(record.error?.type, 'unsupported_upgrade');
  const metrics = await (await request(`${proxy.adminUrl}/metrics`)).body.text();
  assert.match(metrics, /openai_proxy_requests_total\{[^}]*status="400"[^}]*outcome="rejected"\} 1/);
  assert.doesNotMatch(metrics, /openai_proxy_requests_total\{[^}]*status="0"/);
});

test('an Expect other than 100-continue gets an OpenAI-shaped 417 and a record; nothing is forwarded', async () => {
  const before = upstream.requests.length;
  const answer = parseAnswer(
    await rawExchange('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 2\r\n\r\n{}'),
  );
  assert.equal(answer.status, 417);
  assert.equal(answer.error.code, 'expectation_failed');
  const record = await recordFor(answer);
  assert.equal(record.outcome, 'rejected');
  assert.equal(record.response.status, 417);
  assert.equal(upstream.requests.length, before);
});

test('an HTTP/1.1 request without Host gets an OpenAI-shaped 400 and a record; HTTP/1.0 needs none', async () => {
  const before = upstream.requests.length;
  const answer = parseAnswer(await rawExchange('GET /v1/models HTTP/1.1\r\n\r\n'));
  assert.equal(answer.status, 400);
  assert.equal(answer.error.code, 'malformed_request');
  assert.match(answer.error.message, /Host/);
  const record = await recordFor(answer);
  assert.equal(record.outcome, 'rejected');
  assert.equal(record.response.status, 400);
  assert.equal(upstream.requests.length, before);

  const upgrade = parseAnswer(
    await rawExchange(
      'GET /v1/realtime?model=m HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer sk-x\r\n\r\n',
    ),
  );
  assert.equal(upgrade.status, 400);
  assert.equal(upgrade.error.code, 'malformed_request');

  assert.match(await rawExchange('GET /v1/models HTTP/1.0\r\n\r\n'), /^HTTP\/1.1 200 /);
});

test('CONNECT gets an OpenAI-shaped 405 with Allow, and a record', async () => {
  const answer = parseAnswer(await rawExchange('CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n'));
  assert.equal(answer.status, 405);
  assert.equal(answer.error.code, 'method_not_allowed');
  assert.match(answer.headers.allow ?? '', /POST/);
  const record = await recordFor(answer);
  assert.equal(record.request.method, 'CONNECT');
  assert.equal(record.outcome, 'rejected');
  assert.equal(record.response.status, 405);
});

test('a bad chunk mid-body: upstream, which had the head and part of the body, is aborted; the client gets an OpenAI-shaped 400; the record says rejected', async () => {
  const aborted = upstream.aborted;
  const text = await rawExchange('POST /sink HTTP/1.1\r\nHost: x\r\nx-test-case: bad-chunk\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n', {
    after: () => until(() => upstream.requests.some((r) => r.headers['x-test-case'] === 'bad-chunk')),
    bytes: 'zz\r\nworld\r\n0\r\n\r\n',
  });
  const answer = parseAnswer(text);
  assert.equal(answer.status, 400);
  assert.equal(answer.error.code, 'malformed_request');
  await upstream.waitForAborted(aborted + 1);
  const record = await recordFor(answer);
  assert.equal(record.outcome, 'rejected');
  assert.equal(record.error?.type, 'malformed_request');
  assert.equal(record.response.status, 400);
});

test("a WebSocket handshake refusal's head and body are in the record", async () => {
  const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=m`);
  ws.on('error', () => undefined);
  const [, response] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
  assert.equal(response.statusCode, 401);
  const id = String(response.headers['x-proxy-request-id']);
  response.resume();
  ws.terminate();
  const record = await recordOf(proxy, id);
  assert.equal(record.response.status, 401);
  assert.equal(record.response.contentType, 'application/json');
  assert.ok(record.response.bytes > 0);
  assert.equal(record.response.bodyEncoding, 'json');
  assert.equal((record.response.body as { error: { code: string } }).error.code, 'invalid_api_key');
});

test('a stream cut when the shutdown grace runs out is recorded as shutdown, not client_aborted', async () => {
  const p = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: mkdtempSync(join(tmpdir(), 'edge-drain-')) });
  try {
    const res = await request(`${p.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-chunks': '1000', 'x-test-chunk-delay-ms': '50' },
    });
    const id = String(res.headers['x-proxy-request-id']);
    const ended = res.body.text().then(
      () => 'completed',
      () => 'cut',
    );
    await p.drain(100);
    assert.equal(await ended, 'cut');
    const record = await recordOf(p, id);
    assert.equal(record.outcome, 'shutdown');
    assert.equal(record.error?.type, 'shutdown');
    assert.equal(record.response.status, 200);
  } finally {
    await p.runtime.close();
  }
});

test('a WebSocket session cut by the shutdown is recorded as shutdown', async () => {
  const p = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: mkdtempSync(join(tmpdir(), 'edge-drain-ws-')) });
  try {
    const ws = new WebSocket(`${p.url.replace(/^http/, 'ws')}/v1/realtime?model=m`, { headers: { authorization: 'Bearer sk-x' } });
    ws.on('error', () => undefined);
    const upgraded = once(ws, 'upgrade');
    const opened = once(ws, 'open');
    const [response] = (await upgraded) as [import('node:http').IncomingMessage];
    await opened;
    const closed = once(ws, 'close');
    await p.drain(50);
    await closed;
    const record = await recordOf(p, String(response.headers['x-proxy-request-id']));
    assert.equal(record.outcome, 'shutdown');
    assert.equal(record.websocket?.closeCode, 1006);
  } finally {
    await p.runtime.close();
  }
});
