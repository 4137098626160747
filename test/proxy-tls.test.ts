/** TLS on both sides and the corporate egress proxy: HTTPS/WSS serving, a private upstream CA, HTTPS_PROXY. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { WebSocket } from 'ws';
import OpenAI from 'openai';
import { startConnectProxy, type ConnectProxy } from './support/connect-proxy.ts';
import { makeCertificates, type TestCertificates } from './support/tls.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { startTestProxy } from './support/proxy.ts';

let certs: TestCertificates;
let tlsUpstream: Upstream;
let egress: ConnectProxy;

before(async () => {
  certs = makeCertificates();
  tlsUpstream = await startUpstream({ tls: { cert: certs.cert, key: certs.key } });
  egress = await startConnectProxy();
});

after(async () => {
  await tlsUpstream.close();
  await egress.close();
});

test('an HTTPS upstream behind a private CA works with UPSTREAM_CA_FILE, and fails closed without it', async () => {
  const trusted = await startTestProxy({ UPSTREAM_URL: tlsUpstream.url, UPSTREAM_CA_FILE: certs.caFile });
  const untrusted = await startTestProxy({ UPSTREAM_URL: tlsUpstream.url });
  try {
    const ok = await request(`${trusted.url}/v1/models`);
    assert.equal(ok.statusCode, 200);
    await ok.body.dump();
    const refused = await request(`${untrusted.url}/v1/models`);
    assert.equal(refused.statusCode, 502);
    const body = (await refused.body.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'upstream_unreachable');
    assert.match(body.error.message, /certificate/i);
  } finally {
    await trusted.close();
    await untrusted.close();
  }
});

test('the proxy serves HTTPS and WSS with TLS_CERT_FILE/TLS_KEY_FILE', async () => {
  const plainUpstream = await startUpstream();
  const proxy = await startTestProxy({ UPSTREAM_URL: plainUpstream.url, TLS_CERT_FILE: certs.certFile, TLS_KEY_FILE: certs.keyFile });
  const dispatcher = new Agent({ connect: { ca: certs.ca } });
  try {
    assert.match(proxy.url, /^https:/);
    const client = new OpenAI({ apiKey: 'sk-tls', baseURL: `${proxy.url}/v1`, fetchOptions: { dispatcher } });
    const completion = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    assert.ok(completion.id);
    const ws = new WebSocket(`${proxy.url.replace('https', 'wss')}/v1/realtime?model=m`, { ca: certs.ca, headers: { authorization: 'Bearer sk-tls' } });
    await once(ws, 'open');
    ws.close(1000);
    await once(ws, 'close');
  } finally {
    await dispatcher.close();
    await proxy.close();
    await plainUpstream.close();
  }
});

test('HTTPS_PROXY sends upstream traffic through the egress proxy; NO_PROXY exempts hosts', async () => {
  const viaEgress = await startTestProxy({ UPSTREAM_URL: tlsUpstream.url, UPSTREAM_CA_FILE: certs.caFile, HTTPS_PROXY: egress.url });
  const exempt = await startTestProxy({
    UPSTREAM_URL: tlsUpstream.url,
    UPSTREAM_CA_FILE: certs.caFile,
    HTTPS_PROXY: egress.url,
    NO_PROXY: '127.0.0.1',
  });
  try {
    const res = await request(`${viaEgress.url}/v1/models`);
    assert.equal(res.statusCode, 200);
    await res.body.dump();
    assert.deepEqual(egress.tunnels, [`127.0.0.1:${tlsUpstream.port}`]);
    const direct = await request(`${exempt.url}/v1/models`);
    assert.equal(direct.statusCode, 200);
    await direct.body.dump();
    assert.equal(egress.tunnels.length, 1, 'NO_PROXY host went direct');
  } finally {
    await viaEgress.close();
    await exempt.close();
  }
});

test('WebSocket sessions go through the egress proxy too (wss and ws), and NO_PROXY exempts them', async () => {
  const plainUpstream = await startUpstream();
  const proxies = [
    await startTestProxy({ UPSTREAM_URL: tlsUpstream.url, UPSTREAM_CA_FILE: certs.caFile, HTTPS_PROXY: egress.url }),
    await startTestProxy({ UPSTREAM_URL: plainUpstream.url, HTTP_PROXY: egress.url }),
    await startTestProxy({ UPSTREAM_URL: tlsUpstream.url, UPSTREAM_CA_FILE: certs.caFile, HTTPS_PROXY: egress.url, NO_PROXY: '127.0.0.1' }),
  ];
  const before = egress.tunnels.length;
  try {
    for (const proxy of proxies) {
      const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/v1/realtime?model=m`, { headers: { authorization: 'Bearer sk-egress' } });
      await once(ws, 'open');
      ws.send(JSON.stringify({ type: 'response.create' }));
      await once(ws, 'message');
      ws.close(1000);
      await once(ws, 'close');
    }
    assert.deepEqual(egress.tunnels.slice(before), [`127.0.0.1:${tlsUpstream.port}`, `127.0.0.1:${plainUpstream.port}`]);
  } finally {
    for (const proxy of proxies) await proxy.close();
    await plainUpstream.close();
  }
});
