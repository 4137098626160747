/**
 * What one client may hold, bounded: time for its head, an idle or silent connection, a stalled
 * body, the number of connections, the size of a WebSocket message; and what must never be cut:
 * a slow but moving upload, a stream that keeps sending, a long wait for upstream's first byte.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { loadConfig } from '../src/config.ts';
import { recordOf } from './support/audit.ts';
import { until } from './support/net.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { makeCertificates } from './support/tls.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

let upstream: Upstream;

before(async () => {
  upstream = await startUpstream();
});

after(async () => {
  await upstream.close();
});

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Parses the first HTTP/1.1 response in `text` (a body with a Content-Length). */
function parseResponse(text: string): RawResponse | null {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return null;
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length'] ?? 0);
  const body = text.slice(end + 4);
  if (Buffer.byteLength(body, 'latin1') < length) return null;
  return { status: Number(statusLine.split(' ')[1]), headers, body: body.slice(0, length) };
}

/** A raw client connection: what it received, and when it closed. */
class RawClient {
  readonly socket: net.Socket;
  received = '';
  readonly closed: Promise<void>;
  #waiters: Array<() => void> = [];

  constructor(base: string) {
    const url = new URL(base);
    this.socket = net.connect(Number(url.port), url.hostname);
    this.socket.on('error', () => undefined);
    this.socket.on('data', (c: Buffer) => {
      this.received += c.toString('latin1');
      for (const w of this.#waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  connected(): Promise<unknown> {
    return once(this.socket, 'connect');
  }

  /** The next complete response after `skip` characters already read. */
  async response(skip = 0, timeoutMs = 5000): Promise<RawResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const parsed = parseResponse(this.received.slice(skip));
      if (parsed !== null) return parsed;
      if (this.socket.destroyed) throw new Error(`connection closed without a whole response: ${JSON.stringify(this.received)}`);
      if (Date.now() > deadline) throw new Error('no response in time');
      await Promise.race([new Promise<void>((resolve) => this.#waiters.push(resolve)), this.closed, deadlineAfter(deadline)]);
    }
  }
}

function deadlineAfter(deadline: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())).unref());
}

/** Resolves when `done` settles, rejects with `what` if it has not within timeoutMs. */
async function within<T>(done: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([done, late]);
  } finally {
    clearTimeout(timer);
  }
}

function errorCode(res: RawResponse): string {
  assert.equal(res.headers['content-type'], 'application/json');
  const body = JSON.parse(res.body) as { error: { code: string; type: string; param: null; message: string } };
  assert.equal(body.error.param, null);
  assert.ok(body.error.message.length > 0);
  return body.error.code;
}

describe('client timeouts', () => {
  let proxy: TestProxy;
  let dir: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'limits-'));
    proxy = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      AUDIT_ENABLED: 'true',
      AUDIT_DIR: dir,
      CLIENT_HEADERS_TIMEOUT_MS: '300',
      CLIENT_IDLE_TIMEOUT_MS: '200',
      CLIENT_BODY_TIMEOUT_MS: '300',
    });
  });

  after(async () => {
    await proxy.close();
  });

  test('a slowloris head (a header line every 50 ms) is cut with an OpenAI-shaped 408', async () => {
    const client = new RawClient(proxy.url);
    await client.connected();
    client.socket.write('GET /v1/models HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => client.socket.writable && client.socket.write('X-Drip: 1\r\n'), 50);
    try {
      const res = await client.response(0, 5000);
      assert.equal(res.status, 408);
      assert.equal(errorCode(res), 'client_timeout');
      await within(client.closed, 5000, 'the connection closing');
    } finally {
      clearInterval(drip);
      client.socket.destroy();
    }
  });

  test('a connection that never sends a byte is closed after CLIENT_IDLE_TIMEOUT_MS', async () => {
    const client = new RawClient(proxy.url);
    await client.connected();
    const started = Date.now();
    await within(client.closed, 5000, 'the silent connection closing');
    assert.ok(Date.now() - started >= 150, 'not before the idle timeout');
    // Closed as idle, silently; not by the head's timeout, which answers 408.
    assert.equal(client.received, '');
  });

  test('an idle kept-alive connection is closed', async () => {
    const client = new RawClient(proxy.url);
    await client.connected();
    client.socket.write('GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal((await client.response()).status, 200);
    // Node keeps the connection 1 s past the idle time the Keep-Alive header advertises.
    await within(client.closed, 5000, 'the idle connection closing');
  });

  test('a stalled upload gets an OpenAI-shaped 408, upstream sees the abort, the record says rejected', async () => {
    const aborted = upstream.aborted;
    const client = new RawClient(proxy.url);
    await client.connected();
    client.socket.write('POST /sink HTTP/1.1\r\nHost: x\r\nx-test-case: stalled\r\nContent-Length: 100000\r\n\r\n');
    client.socket.write(Buffer.alloc(1000, 0x61));
    await until(() => upstream.requests.some((r) => r.headers['x-test-case'] === 'stalled'));
    const res = await client.response();
    assert.equal(res.status, 408);
    assert.equal(errorCode(res), 'client_timeout');
    await upstream.waitForAborted(aborted + 1);
    await within(client.closed, 5000, 'the connection closing');
    const record = await recordOf(proxy, String(res.headers['x-proxy-request-id']));
    assert.equal(record.outcome, 'rejected');
    assert.equal(record.response.status, 408);
    assert.equal(record.error?.type, 'client_timeout');
  });

  test('a slow but moving upload (gaps shorter than the timeout, longer in all) is never cut', async () => {
    const chunks = 8;
    const res = await request(`${proxy.url}/sink`, {
      method: 'POST',
      headers: { 'content-length': String(chunks * 1000) },
      body: Readable.from((async function* () {
        for (let i = 0; i < chunks; i++) {
          // The client's pace: a chunk every 100 ms, 800 ms in all, against a 300 ms body timeout.
          if (i > 0) await new Promise((resolve) => setTimeout(resolve, 100));
          yield Buffer.alloc(1000, 0x62);
        }
      })()),
    });
    assert.equal(res.statusCode, 200);
    assert.equal(((await res.body.json()) as { bytes: number }).bytes, chunks * 1000);
  });

  test('an upload held back by upstream (backpressure) past the body timeout is not the client stalling', async () => {
    const size = 32 * 1024 * 1024;
    const res = await request(`${proxy.url}/sink`, {
      method: 'POST',
      headers: { 'content-length': String(size), 'x-test-read-delay-ms': '1000' },
      body: Buffer.alloc(size, 0x63),
    });
    assert.equal(res.statusCode, 200);
    assert.equal(((await res.body.json()) as { bytes: number }).bytes, size);
  });

  test('a stream that keeps sending, and a wait for upstream longer than every client timeout, are never cut', async () => {
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-delay-ms': '600', 'x-test-chunks': '8', 'x-test-chunk-delay-ms': '100' },
    });
    assert.equal(res.statusCode, 200);
    assert.match(await res.body.text(), /data: \[DONE\]/);
  });
});

describe('MAX_CLIENT_CONNECTIONS', () => {
  test('a connection beyond the cap gets an OpenAI-shaped 503 and is closed; the open ones still work', async () => {
    const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, MAX_CLIENT_CONNECTIONS: '2' });
    const clients: RawClient[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const client = new RawClient(proxy.url);
        clients.push(client);
        await client.connected();
        client.socket.write('GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
        assert.equal((await client.response()).status, 200);
      }
      const extra = new RawClient(proxy.url);
      await extra.connected();
      extra.socket.write('GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
      const refused = await extra.response();
      assert.equal(refused.status, 503);
      assert.equal(errorCode(refused), 'too_many_connections');
      assert.equal(refused.headers.connection, 'close');
      await within(extra.closed, 5000, 'the refused connection closing');

      const [first, second] = clients as [RawClient, RawClient];
      const before = first.received.length;
      first.socket.write('GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal((await first.response(before)).status, 200, 'an open connection still works');

      second.socket.destroy();
      await until(async () => {
        const res = await request(`${proxy.url}/v1/models`, { reset: true });
        await res.body.dump();
        return res.statusCode === 200;
      }, 5000, 'a place freed by a closed connection');
    } finally {
      for (const c of clients) c.socket.destroy();
      await proxy.close();
    }
  });
});

test('over TLS: a silent connection is closed when idle, one beyond the cap is closed before the handshake', async () => {
  const certs = makeCertificates();
  const proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    TLS_CERT_FILE: certs.certFile,
    TLS_KEY_FILE: certs.keyFile,
    MAX_CLIENT_CONNECTIONS: '1',
    CLIENT_IDLE_TIMEOUT_MS: '1000',
  });
  const port = Number(new URL(proxy.url).port);
  const connect = (): tls.TLSSocket => tls.connect({ port, host: '127.0.0.1', ca: certs.ca, servername: 'localhost' });
  try {
    const silent = connect();
    const silentClosed = once(silent, 'close');
    await once(silent, 'secureConnect');
    const started = Date.now();

    const extra = connect();
    let secured = false;
    extra.on('secureConnect', () => (secured = true));
    extra.on('error', () => undefined);
    await within(new Promise((resolve) => extra.once('close', resolve)), 5000, 'the connection over the cap closing');
    assert.equal(secured, false, 'no handshake beyond the cap');

    await within(silentClosed, 5000, 'the silent TLS connection closing');
    assert.ok(Date.now() - started >= 800, 'not before the idle timeout');
  } finally {
    await proxy.close();
  }
});

describe('WS_MAX_MESSAGE_BYTES', () => {
  let proxy: TestProxy;

  before(async () => {
    proxy = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      AUDIT_ENABLED: 'true',
      AUDIT_DIR: mkdtempSync(join(tmpdir(), 'limits-ws-')),
      WS_MAX_MESSAGE_BYTES: '65536',
    });
  });

  after(async () => {
    await proxy.close();
  });

  async function session(): Promise<{ ws: WebSocket; id: string }> {
    const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=m`, { headers: { authorization: 'Bearer sk-x' } });
    ws.on('error', () => undefined);
    const upgraded = once(ws, 'upgrade');
    const opened = once(ws, 'open');
    const [response] = (await upgraded) as [import('node:http').IncomingMessage];
    await opened;
    return { ws, id: String(response.headers['x-proxy-request-id']) };
  }

  test('an oversized message from the client: 1009 to the client and to upstream, and the record says so', async () => {
    const sessions = upstream.wsSessions.length;
    const { ws, id } = await session();
    await until(() => upstream.wsSessions.length > sessions);
    const upstreamSide = upstream.wsSessions.at(-1);
    ws.send(Buffer.alloc(100_000), { binary: true });
    const [code] = (await within(once(ws, 'close'), 5000, 'the client closed')) as [number];
    assert.equal(code, 1009);
    await until(() => upstreamSide?.closed !== null, 5000, 'upstream closed');
    assert.equal(upstreamSide?.closed?.code, 1009);
    assert.equal(upstreamSide?.received.length, 0, 'the oversized message never reached upstream');
    const record = await recordOf(proxy, id);
    assert.equal(record.websocket?.closeCode, 1009);
    assert.equal(record.websocket?.closedBy, 'proxy');
    assert.equal(record.error?.type, 'message_too_big');
  });

  test('an oversized message from upstream: 1009 to upstream and to the client, and the record says so', async () => {
    const sessions = upstream.wsSessions.length;
    const { ws, id } = await session();
    await until(() => upstream.wsSessions.length > sessions);
    const upstreamSide = upstream.wsSessions.at(-1);
    let binary = 0;
    ws.on('message', (_data: Buffer, isBinary: boolean) => (binary += isBinary ? 1 : 0));
    ws.send(JSON.stringify({ type: 'test.send', bytes: 100_000 }));
    const [code] = (await within(once(ws, 'close'), 5000, 'the client closed')) as [number];
    assert.equal(code, 1009);
    assert.equal(binary, 0, 'the oversized message never reached the client');
    await until(() => upstreamSide?.closed !== null, 5000, 'upstream closed');
    assert.equal(upstreamSide?.closed?.code, 1009);
    const record = await recordOf(proxy, id);
    assert.equal(record.websocket?.closeCode, 1009);
    assert.equal(record.websocket?.closedBy, 'proxy');
    assert.match(String(record.websocket?.closeReason), /upstream/);
  });

  test('a message under the limit still passes both ways', async () => {
    const { ws } = await session();
    const echoed = new Promise<Buffer>((resolve) => ws.on('message', (d: Buffer, isBinary: boolean) => isBinary && resolve(d)));
    ws.send(Buffer.alloc(60_000, 7), { binary: true });
    assert.equal((await within(echoed, 5000, 'the echo')).length, 60_000);
    ws.close();
    await once(ws, 'close');
  });
});

test('the limits are configured, with defaults that fit the Realtime API and long streams', () => {
  const defaults = loadConfig({}).client;
  assert.equal(defaults.wsMaxMessageBytes, 32 * 1024 * 1024);
  assert.ok(defaults.headersTimeoutMs > 0 && defaults.idleTimeoutMs > 0 && defaults.bodyTimeoutMs > 0 && defaults.maxConnections > 0);
  assert.throws(() => loadConfig({ CLIENT_BODY_TIMEOUT_MS: '0' }), /CLIENT_BODY_TIMEOUT_MS/);
  assert.throws(() => loadConfig({ MAX_CLIENT_CONNECTIONS: 'many' }), /MAX_CLIENT_CONNECTIONS/);
  assert.throws(() => loadConfig({ WS_MAX_MESSAGE_BYTES: '10' }), /WS_MAX_MESSAGE_BYTES/);
});
