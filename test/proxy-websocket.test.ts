/** The Realtime API over WebSocket through the proxy: handshake, subprotocols, messages, close codes. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { WebSocket } from 'ws';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { until } from './support/net.ts';
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

function wsUrl(base: string, path: string): string {
  return base.replace(/^http/, 'ws') + path;
}

/** Collects JSON messages and resolves when one of `type` arrives. */
function nextOfType(ws: WebSocket, type: string): Promise<Record<string, unknown>> {
  return new Promise((resolve) => {
    const onMessage = (data: Buffer, isBinary: boolean): void => {
      if (isBinary) return;
      const message = JSON.parse(data.toString('utf8')) as Record<string, unknown>;
      if (message.type !== type) return;
      ws.off('message', onMessage);
      resolve(message);
    };
    ws.on('message', onMessage);
  });
}

test('a Realtime session: greeting, response, binary echo, the client closes with its code', async () => {
  const ws = new WebSocket(wsUrl(proxy.url, '/v1/realtime?model=gpt-realtime'), ['realtime'], {
    headers: { authorization: 'Bearer sk-realtime-1234', 'openai-beta': 'realtime=v1' },
  });
  const greeting = nextOfType(ws, 'session.created');
  const upgraded = once(ws, 'upgrade');
  const opened = once(ws, 'open');
  const [response] = (await upgraded) as [import('node:http').IncomingMessage];
  assert.ok(response.headers['x-proxy-request-id']);
  await opened;
  assert.equal(ws.protocol, 'realtime');
  const session = (await greeting).session as { model: string };
  assert.equal(session.model, 'gpt-realtime');

  const done = nextOfType(ws, 'response.done');
  ws.send(JSON.stringify({ type: 'response.create' }));
  assert.equal(((await done).response as { status: string }).status, 'completed');

  const echoed = new Promise<Buffer>((resolve) => ws.on('message', (d: Buffer, isBinary: boolean) => isBinary && resolve(d)));
  ws.send(Buffer.from([1, 2, 3, 250]), { binary: true });
  assert.deepEqual([...(await echoed)], [1, 2, 3, 250]);

  const session0 = upstream.wsSessions.at(-1);
  assert.equal(session0?.headers.authorization, 'Bearer sk-realtime-1234');
  assert.equal(session0?.headers['openai-beta'], 'realtime=v1');
  assert.equal(session0?.url, '/v1/realtime?model=gpt-realtime');
  ws.close(4001, 'client done');
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  assert.equal(code, 4001);
  assert.equal(reason.toString(), 'client done');
});

test("the upstream's close code and reason reach the client", async () => {
  const ws = new WebSocket(wsUrl(proxy.url, '/v1/realtime?model=m'), { headers: { authorization: 'Bearer sk-x' } });
  await once(ws, 'open');
  ws.send(JSON.stringify({ type: 'test.close', code: 4002, reason: 'upstream says bye' }));
  const [code, reason] = (await once(ws, 'close')) as [number, Buffer];
  assert.equal(code, 4002);
  assert.equal(reason.toString(), 'upstream says bye');
});

test('browser-style auth in the subprotocol reaches upstream, which picks the protocol', async () => {
  const ws = new WebSocket(wsUrl(proxy.url, '/v1/realtime?model=m'), ['realtime', 'openai-insecure-api-key.sk-browser-9999']);
  await once(ws, 'open');
  assert.equal(ws.protocol, 'realtime');
  assert.match(String(upstream.wsSessions.at(-1)?.headers['sec-websocket-protocol']), /openai-insecure-api-key\.sk-browser-9999/);
  ws.close();
  await once(ws, 'close');
});

test("upstream's handshake refusal reaches the client as upstream sent it", async () => {
  const ws = new WebSocket(wsUrl(proxy.url, '/v1/realtime?model=m'));
  const [, response] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
  assert.equal(response.statusCode, 401);
  const chunks: Buffer[] = [];
  for await (const c of response) chunks.push(c as Buffer);
  assert.match(Buffer.concat(chunks).toString(), /"error"/);
  ws.on('error', () => undefined);
  ws.terminate();
});

test('an unreachable upstream refuses the handshake with 502', async () => {
  const p = await startTestProxy({ UPSTREAM_URL: 'http://127.0.0.1:1' });
  try {
    const ws = new WebSocket(wsUrl(p.url, '/v1/realtime?model=m'), { headers: { authorization: 'Bearer sk-x' } });
    const [, response] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
    assert.equal(response.statusCode, 502);
    ws.on('error', () => undefined);
    ws.terminate();
  } finally {
    await p.close();
  }
});

/** Sends raw bytes on a fresh connection and resolves with the first chunk the proxy answers. */
async function rawUpgrade(base: string, headers: string, target = '/v1/realtime?model=m'): Promise<string> {
  const url = new URL(base);
  const socket = net.connect(Number(url.port), url.hostname);
  socket.write(
    `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n` +
      `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer sk-x\r\n${headers}\r\n`,
  );
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  socket.destroy();
  return chunk.toString('latin1');
}

test('an invalid subprotocol list or a fragment gets a 400, and the proxy lives on', async () => {
  assert.match(await rawUpgrade(proxy.url, 'Sec-WebSocket-Protocol: realtime, realtime\r\n'), /^HTTP\/1.1 400 [\s\S]*malformed_request/);
  assert.match(await rawUpgrade(proxy.url, 'Sec-WebSocket-Protocol: a/b\r\n'), /^HTTP\/1.1 400 /);
  assert.match(await rawUpgrade(proxy.url, '', '/v1/realtime?model=m#frag'), /^HTTP\/1.1 101 /);
  const ws = new WebSocket(wsUrl(proxy.url, '/v1/realtime?model=m'), { headers: { authorization: 'Bearer sk-x' } });
  await once(ws, 'open');
  ws.close();
  await once(ws, 'close');
});

test('a WebSocket upgrade pipelined behind a request while draining never opens a session, and the drain completes', async () => {
  const p = await startTestProxy({ UPSTREAM_URL: upstream.url });
  const url = new URL(p.url);
  const socket = net.connect(Number(url.port), url.hostname);
  await once(socket, 'connect');
  socket.write(
    'GET /v1/models HTTP/1.1\r\nHost: x\r\nx-test-delay-ms: 200\r\n\r\n' +
      'GET /v1/realtime?model=m HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer sk-x\r\n\r\n',
  );
  await until(() => upstream.requests.some((r) => r.headers['x-test-delay-ms'] === '200'));
  const drained = p.drain(5000);
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  await once(socket, 'close');
  const answer = Buffer.concat(chunks).toString('latin1');
  assert.match(answer, /^HTTP\/1.1 200 /);
  assert.doesNotMatch(answer, /HTTP\/1.1 101 /);
  await drained;
  await p.runtime.close();
});
