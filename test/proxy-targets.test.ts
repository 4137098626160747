/**
 * Request targets (issue 13, findings 4 and 7): every exchange is understood from its origin-form
 * target, whatever form the client sent it in; userinfo is never kept; dot segments, raw or
 * percent-encoded, are refused before routing, so no request leaves the configured base path;
 * UPSTREAM_ROUTES prefixes match whole segments. Targets are sent with node:http's client and
 * `setHost: false`, which send the path as given (URL parsers would resolve the dot segments).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { hasDotSegment, parseRequestTarget } from '../src/proxy/routes.ts';
import { recordOf } from './support/audit.ts';
import { SpanKind, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { EMULATOR_USAGE, startUpstream, type Upstream } from './support/upstream.ts';

let upstream: Upstream;
const dirs: string[] = [];

function auditDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'targets-'));
  dirs.push(dir);
  return dir;
}

before(async () => {
  upstream = await startUpstream();
});

after(async () => {
  await upstream.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

interface Reply {
  status: number;
  id: string;
  body: string;
}

/** One request with exactly this target and these header lines. */
function send(base: string, target: string, options: { method?: string; headers?: Array<[string, string]>; body?: string } = {}): Promise<Reply> {
  const url = new URL(base);
  const headers: Array<[string, string]> = [['Host', url.host], ...(options.headers ?? [])];
  if (options.body !== undefined) headers.push(['Content-Type', 'application/json'], ['Content-Length', String(Buffer.byteLength(options.body))]);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method: options.method ?? 'GET', path: target, setHost: false, headers: headers.flat(), agent: false });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, id: String(res.headers['x-proxy-request-id']), body: Buffer.concat(chunks).toString('utf8') }));
    });
    // A handshake the proxy let through: the test has seen enough.
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, id: String(res.headers['x-proxy-request-id']), body: '' });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function errorCode(reply: Reply): string {
  return (JSON.parse(reply.body) as { error: { code: string; type: string } }).error.code;
}

/** The SERVER span of this exchange and its CLIENT child. */
async function spansOf(receiver: OtlpReceiver, id: string): Promise<{ server: ReceivedSpan; client: ReceivedSpan }> {
  const [server] = await receiver.waitForSpans((s) => s.kind === SpanKind.SERVER && s.attributes['openai_proxy.request_id'] === id);
  assert.ok(server);
  const [client] = await receiver.waitForSpans((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server.spanId);
  assert.ok(client);
  return { server, client };
}

const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

describe('an absolute-form target (a client behind HTTP_PROXY)', () => {
  let receiver: OtlpReceiver;
  let proxy: TestProxy;

  before(async () => {
    receiver = await startOtlpReceiver();
    proxy = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      AUDIT_ENABLED: 'true',
      AUDIT_DIR: auditDir(),
      METRICS_ENABLED: 'true',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '20',
    });
  });

  after(async () => {
    await proxy.close();
    await receiver.close();
  });

  test('is accounted, measured and traced as its path, and its userinfo is kept nowhere', async () => {
    const target = 'http://user:SECRET-pw@api.openai.com/v1/chat/completions';
    const reply = await send(proxy.url, target, { method: 'POST', body: CHAT, headers: [['Authorization', 'Bearer sk-targets-test']] });
    assert.equal(reply.status, 200, reply.body);
    assert.equal(upstream.requests.at(-1)?.url, '/v1/chat/completions');

    const record = await recordOf(proxy, reply.id);
    assert.equal(record.request.path, '/v1/chat/completions');
    assert.equal(record.request.query, null);
    assert.equal(record.openai?.operation, 'chat.completions');
    assert.equal(record.openai?.usage?.inputTokens, EMULATOR_USAGE.prompt);
    assert.equal(record.openai?.usage?.totalTokens, EMULATOR_USAGE.total);
    assert.ok(!JSON.stringify(record).includes('SECRET'), 'the userinfo is in the record');

    const metrics = await (await request(`${proxy.adminUrl}/metrics`)).body.text();
    assert.match(metrics, /openai_proxy_requests_total\{[^}]*operation="chat\.completions"[^}]*\} 1/);
    assert.doesNotMatch(metrics, /operation="none"/);
    assert.ok(!metrics.includes('SECRET'));

    const { server, client } = await spansOf(receiver, reply.id);
    assert.equal(server.attributes['url.path'], '/v1/chat/completions');
    assert.equal(server.attributes['http.route'], '/v1/chat/completions');
    assert.equal(client.attributes['url.full'], `${upstream.url}/v1/chat/completions`);
    assert.equal(client.attributes['gen_ai.operation.name'], 'chat');
    for (const span of [server, client]) assert.ok(!JSON.stringify(span.attributes).includes('SECRET'), `${span.name} carries the userinfo`);
  });

  test("keeps its query (redacted as any other) but never its authority's userinfo", async () => {
    const reply = await send(proxy.url, 'http://user:SECRET-pw@api.openai.com/v1/models?limit=2&api_key=sk-in-query');
    assert.equal(reply.status, 200, reply.body);
    assert.equal(upstream.requests.at(-1)?.url, '/v1/models?limit=2&api_key=sk-in-query');
    const record = await recordOf(proxy, reply.id);
    assert.equal(record.request.path, '/v1/models');
    assert.match(String(record.request.query), /^limit=2&api_key=/);
    assert.equal(record.openai?.operation, 'models');
    assert.ok(!JSON.stringify(record).includes('SECRET'));
  });

  test('refused for a dot segment, still gets a record (rejected) without the userinfo', async () => {
    const before = upstream.requests.length;
    const reply = await send(proxy.url, 'http://user:SECRET-pw@api.openai.com/v1/../admin');
    assert.equal(reply.status, 400);
    assert.equal(errorCode(reply), 'invalid_request_target');
    assert.equal(upstream.requests.length, before);
    const record = await recordOf(proxy, reply.id);
    assert.equal(record.outcome, 'rejected');
    assert.equal(record.request.path, '/v1/../admin');
    assert.ok(!JSON.stringify(record).includes('SECRET'));
    assert.equal(record.openai, null);
    const { server } = await receiver.waitForSpans((s) => s.kind === SpanKind.SERVER && s.attributes['openai_proxy.request_id'] === reply.id).then(([s]) => ({ server: s }));
    assert.ok(server);
    assert.ok(!JSON.stringify(server.attributes).includes('SECRET'));
  });
});

describe('UPSTREAM_URL with a base path', () => {
  let receiver: OtlpReceiver;
  let proxy: TestProxy;

  before(async () => {
    receiver = await startOtlpReceiver();
    proxy = await startTestProxy({
      UPSTREAM_URL: `${upstream.url}/openai`,
      AUDIT_ENABLED: 'true',
      AUDIT_DIR: auditDir(),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_BSP_SCHEDULE_DELAY: '20',
    });
  });

  after(async () => {
    await proxy.close();
    await receiver.close();
  });

  const escapes = [
    '/../admin/keys',
    '/%2e%2e/admin',
    '/%2E./admin',
    '/.%2e/admin',
    '/v1/../../x',
    '/v1/./models',
    '/v1/models/..',
    '/v1/chat/completions/%2E%2e',
    '/v1/responses/.',
    '/..%2fadmin',
    '/..%5Cadmin',
    '/%252e%252e/admin',
    '/..;x/admin',
    '/../admin?key=1',
    'http://api.openai.com/../admin',
  ];
  for (const target of escapes) {
    test(`${target} is refused with a 400 and never reaches upstream`, async () => {
      const before = upstream.requests.length;
      const reply = await send(proxy.url, target, { method: 'POST', body: CHAT });
      assert.equal(reply.status, 400, `upstream saw ${upstream.requests.at(-1)?.url}`);
      assert.equal(errorCode(reply), 'invalid_request_target');
      assert.equal(upstream.requests.length, before, `upstream saw ${upstream.requests.at(-1)?.url}`);
      const record = await recordOf(proxy, reply.id);
      assert.equal(record.outcome, 'rejected');
      assert.equal(record.response.status, 400);
      // Not routed, so not an operation: a refused path is not measured as one.
      assert.equal(record.openai, null);
    });
  }

  test('a WebSocket handshake with a dot segment is refused before upstream is dialled', async () => {
    const before = upstream.wsSessions.length;
    const beforeHttp = upstream.requests.length;
    const reply = await send(proxy.url, '/../v1/realtime?model=gpt-realtime', {
      headers: [
        ['Connection', 'Upgrade'],
        ['Upgrade', 'websocket'],
        ['Sec-WebSocket-Version', '13'],
        ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
        ['Authorization', 'Bearer sk-targets-test'],
      ],
    });
    assert.equal(upstream.wsSessions.length, before, `upstream opened ${upstream.wsSessions.at(-1)?.url}`);
    assert.equal(upstream.requests.length, beforeHttp);
    assert.equal(reply.status, 400, reply.body);
    assert.equal(errorCode(reply), 'invalid_request_target');
  });

  test('paths without dot segments pass under the base path, as sent (dots inside names, encoded slashes)', async () => {
    for (const path of ['/v1/models', '/v1/models/ft:gpt-4o.2024', '/v1/models/a%2Fb', '/v1/files/...x', '/v1/files/.well-known']) {
      const reply = await send(proxy.url, path);
      assert.notEqual(reply.status, 400, `${path}: ${reply.body}`);
      assert.equal(upstream.requests.at(-1)?.url, `/openai${path}`);
    }
  });

  test("the CLIENT span's url.full is the URL requested upstream, base path included, query redacted", async () => {
    const reply = await send(proxy.url, '/v1/models?limit=2&api_key=sk-in-query');
    assert.equal(upstream.requests.at(-1)?.url, '/openai/v1/models?limit=2&api_key=sk-in-query');
    const { server, client } = await spansOf(receiver, reply.id);
    assert.equal(server.attributes['url.path'], '/v1/models');
    const full = client.attributes['url.full'];
    assert.equal(typeof full, 'string');
    assert.match(full as string, new RegExp(`^${upstream.url}/openai/v1/models\\?limit=2&api_key=`));
    assert.ok(!(full as string).includes('sk-in-query'), full as string);
  });
});

describe('UPSTREAM_ROUTES', () => {
  let other: Upstream;
  let proxy: TestProxy;

  before(async () => {
    other = await startUpstream();
    proxy = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      UPSTREAM_ROUTES: JSON.stringify({ '/backend-api/': other.url, '/v1/audio': other.url }),
    });
  });

  after(async () => {
    await proxy.close();
    await other.close();
  });

  test('/backend-api/../v1/... is not routed by the raw prefix: refused, neither origin sees it', async () => {
    const beforeOther = other.requests.length;
    const beforeMain = upstream.requests.length;
    for (const target of ['/backend-api/../v1/models', '/backend-api/%2e%2e/v1/models', '/v1/audio/../models']) {
      const reply = await send(proxy.url, target);
      assert.equal(reply.status, 400, `${target}: other saw ${other.requests.at(-1)?.url}`);
      assert.equal(errorCode(reply), 'invalid_request_target');
    }
    assert.equal(other.requests.length, beforeOther, `other saw ${other.requests.at(-1)?.url}`);
    assert.equal(upstream.requests.length, beforeMain);
  });

  test('prefixes match whole segments', async () => {
    const cases: Array<[string, Upstream]> = [
      ['/backend-api/echo', other],
      ['/backend-api', other],
      ['/backend-api?x=1', other],
      ['/backend-apix/echo', upstream],
      ['/v1/audio/speech', other],
      ['/v1/audio', other],
      ['/v1/audiox/echo', upstream],
      ['/v1/models', upstream],
    ];
    for (const [target, expected] of cases) {
      const seen = { other: other.requests.length, main: upstream.requests.length };
      await send(proxy.url, target);
      assert.equal(other.requests.length - seen.other, expected === other ? 1 : 0, `${target} went to the wrong origin`);
      assert.equal(upstream.requests.length - seen.main, expected === upstream ? 1 : 0, `${target} went to the wrong origin`);
      assert.equal(expected.requests.at(-1)?.url, target);
    }
  });
});

describe('the target rules', () => {
  test('dot segments are found raw, percent-encoded, behind encoded or back slashes, path parameters, double encoding', () => {
    for (const path of ['/..', '/.', '/a/../b', '/a/./b', '/%2e%2e', '/%2E%2E/x', '/.%2E/x', '/%2e./x', '/%2e', '/a/..%2Fb', '/a/..%2fb',
      '/a%2F..%2Fb', '/..%5cx', '/..\\x', '/a\\..\\b', '/%252e%252e/x', '/%25252e./x', '/..;jsessionid=1/x', '/.;x/y']) {
      assert.equal(hasDotSegment(path), true, path);
    }
    for (const path of ['/', '/v1/chat/completions', '/v1/models/ft:gpt-4o.2024', '/...', '/..x', '/x..', '/.well-known', '/a%2Fb',
      '/%2e%2e%2e', '/a/b.c/d', '/100%25', '//x', '/a;..']) {
      assert.equal(hasDotSegment(path), false, path);
    }
  });

  test('an absolute-form target keeps its path and query only', () => {
    assert.deepEqual(parseRequestTarget('http://u:p@h:1/v1/x?y=1'), { path: '/v1/x', query: 'y=1' });
    assert.deepEqual(parseRequestTarget('HTTPS://h'), { path: '/', query: null });
    assert.deepEqual(parseRequestTarget('http://h?q'), { path: '/', query: 'q' });
    assert.deepEqual(parseRequestTarget('/v1/x?'), { path: '/v1/x', query: '' });
    assert.throws(() => parseRequestTarget('*'), { code: 'invalid_request_target' });
    assert.throws(() => parseRequestTarget('/a/%2e%2e/b'), { code: 'invalid_request_target' });
    assert.throws(() => parseRequestTarget(''), { code: 'invalid_request_target' });
  });
});
