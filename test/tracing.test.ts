/**
 * OpenTelemetry traces end to end: client -> proxy -> emulator, spans exported over OTLP/HTTP JSON to a
 * test receiver. One SDK per proxy; several start and stop in this one process, as they share the API global.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { context, createContextKey, propagation, ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { exporterConfig } from '../src/telemetry/tracing.ts';
import { loadConfig, type TracingConfig } from '../src/config.ts';
import { redactQuery } from '../src/capture/redact-query.ts';
import { recordOf } from './support/audit.ts';
import { SpanKind, StatusCode, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { EMULATOR_TEXT, EMULATOR_USAGE, startUpstream, type Upstream } from './support/upstream.ts';

const PROMPT = 'Describe the purple giraffe named Zorblax';
const SPAN_KEY = 'sk-proj-TracingSpanKey_AbCdEfGh-0123456789';

let upstream: Upstream;
const dirs: string[] = [];

function auditDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tracing-'));
  dirs.push(dir);
  return dir;
}

function tracingEnv(receiver: OtlpReceiver, extra: Record<string, string> = {}): Record<string, string> {
  return {
    UPSTREAM_URL: upstream.url,
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: auditDir(),
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '20',
    ...extra,
  };
}

/** A fresh client-side parent, as an instrumented caller would send it. */
function clientParent(): { traceId: string; spanId: string; traceparent: string } {
  const traceId = randomBytes(16).toString('hex');
  const spanId = randomBytes(8).toString('hex');
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

interface Reply {
  id: string;
  status: number;
  text: string;
}

async function post(proxy: TestProxy, path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await request(`${proxy.url}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { authorization: 'Bearer sk-tracing-test', 'content-type': 'application/json', ...headers },
  });
  return { id: String(res.headers['x-proxy-request-id']), status: res.statusCode, text: await res.body.text() };
}

function chatBody(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], ...extra };
}

/** The SERVER span of the exchange with this x-proxy-request-id, and its CLIENT child if it has one. */
async function spansOf(receiver: OtlpReceiver, id: string, withClient = true): Promise<{ server: ReceivedSpan; client: ReceivedSpan }> {
  const [server] = await receiver.waitForSpans((s) => s.kind === SpanKind.SERVER && s.attributes['openai_proxy.request_id'] === id);
  assert.ok(server);
  if (!withClient) return { server, client: server };
  const [client] = await receiver.waitForSpans((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server.spanId);
  assert.ok(client);
  return { server, client };
}

/** A string attribute, failing the test if it is absent or of another type. */
function str(span: ReceivedSpan, key: string): string {
  const value = span.attributes[key];
  assert.equal(typeof value, 'string', `${span.name}: ${key} = ${JSON.stringify(value)}`);
  return value as string;
}

function assertNoContent(spans: ReceivedSpan[]): void {
  for (const span of spans) {
    const text = JSON.stringify([span.attributes, span.events.map((e) => [e.name, e.attributes])]);
    assert.ok(!text.includes('Zorblax'), `span ${span.name} carries prompt text`);
    assert.ok(!text.includes(EMULATOR_TEXT), `span ${span.name} carries completion text`);
    assert.equal(span.attributes['gen_ai.input.messages'], undefined);
    assert.equal(span.attributes['gen_ai.output.messages'], undefined);
  }
}

async function deadOrigin(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

before(async () => {
  upstream = await startUpstream();
});

after(async () => {
  await upstream.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

// First in the file, before any SDK has registered itself with the API global.
test('with no OTLP endpoint nothing of OpenTelemetry starts, and traceparent passes through untouched', async () => {
  const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: auditDir() });
  try {
    assert.equal(proxy.runtime.tracing, null);
    assert.equal(trace.getTracer('probe').startSpan('probe').isRecording(), false, 'a global tracer provider is registered');
    assert.deepEqual(propagation.fields(), [], 'a global propagator is registered');
    const parent = clientParent();
    const reply = await post(proxy, '/v1/chat/completions', chatBody(), { traceparent: parent.traceparent });
    assert.equal(reply.status, 200);
    assert.equal(upstream.requests.at(-1)?.headers.traceparent, parent.traceparent);
    assert.equal((await recordOf(proxy, reply.id)).trace, null);
  } finally {
    await proxy.close();
  }
});

describe('a traced proxy', () => {
  let receiver: OtlpReceiver;
  let proxy: TestProxy;

  before(async () => {
    receiver = await startOtlpReceiver();
    proxy = await startTestProxy(tracingEnv(receiver));
  });

  after(async () => {
    await proxy.close();
    await receiver.close();
  });

  test("a chat completion: a SERVER span continuing the client's trace, a GenAI CLIENT span, linked to the audit record", async () => {
    const parent = clientParent();
    const reply = await post(proxy, '/v1/chat/completions', chatBody({ temperature: 0.25, max_tokens: 64, top_p: 0.9, seed: 42 }), {
      traceparent: parent.traceparent,
      tracestate: 'congo=t61rcWkgMzE',
      'user-agent': 'tracing-test/1.0',
    });
    assert.equal(reply.status, 200);
    const spans = await receiver.waitForSpans((s) => s.traceId === parent.traceId, 5000, 2);
    assert.equal(spans.length, 2, 'exactly one SERVER and one CLIENT span');
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    assert.ok(server && client);

    assert.equal(server.name, 'POST /v1/chat/completions');
    assert.equal(server.parentSpanId, parent.spanId);
    assert.equal(server.status.code, StatusCode.UNSET);
    assert.equal(server.attributes['http.request.method'], 'POST');
    assert.equal(server.attributes['http.route'], '/v1/chat/completions');
    assert.equal(server.attributes['url.path'], '/v1/chat/completions');
    assert.equal(server.attributes['url.scheme'], 'http');
    assert.equal(server.attributes['http.response.status_code'], 200);
    assert.equal(server.attributes['user_agent.original'], 'tracing-test/1.0');
    assert.equal(server.attributes['openai_proxy.request_id'], reply.id);
    assert.equal(server.attributes['error.type'], undefined);

    assert.equal(client.name, 'chat gpt-4o-mini');
    assert.equal(client.parentSpanId, server.spanId);
    assert.equal(client.status.code, StatusCode.UNSET);
    const a = client.attributes;
    assert.equal(a['gen_ai.operation.name'], 'chat');
    assert.equal(a['gen_ai.provider.name'], 'openai');
    assert.equal(a['openai.api.type'], 'chat_completions');
    assert.equal(a['gen_ai.request.model'], 'gpt-4o-mini');
    assert.equal(a['gen_ai.response.model'], 'gpt-4o-mini');
    assert.match(str(client, 'gen_ai.response.id'), /^chatcmpl-/);
    assert.deepEqual(a['gen_ai.response.finish_reasons'], ['stop']);
    assert.equal(a['gen_ai.usage.input_tokens'], EMULATOR_USAGE.prompt);
    assert.equal(a['gen_ai.usage.output_tokens'], EMULATOR_USAGE.completion);
    assert.equal(a['gen_ai.usage.cache_read.input_tokens'], EMULATOR_USAGE.cached);
    assert.equal(a['gen_ai.usage.reasoning.output_tokens'], EMULATOR_USAGE.reasoning);
    assert.equal(a['gen_ai.request.temperature'], 0.25);
    assert.equal(a['gen_ai.request.max_tokens'], 64);
    assert.equal(a['gen_ai.request.top_p'], 0.9);
    assert.equal(a['gen_ai.request.seed'], 42);
    assert.equal(a['gen_ai.request.stream'], undefined, 'only set when streaming');
    assert.equal(a['server.address'], '127.0.0.1');
    assert.equal(a['server.port'], upstream.port);
    assert.equal(a['url.full'], `${upstream.url}/v1/chat/completions`);
    assert.equal(a['http.response.status_code'], 200);
    assert.equal(a['error.type'], undefined);

    // The CLIENT span sits inside the SERVER span.
    assert.ok(server.startNs <= client.startNs && client.startNs <= client.endNs && client.endNs <= server.endNs);
    assert.equal(server.resource['service.name'], 'openai-api-proxy');

    // Upstream sees the proxy's CLIENT span as its parent, not the caller's span; tracestate carries over once.
    const seen = upstream.requests.at(-1)?.headers;
    assert.equal(seen?.traceparent, `00-${parent.traceId}-${client.spanId}-01`);
    assert.equal(seen?.tracestate, 'congo=t61rcWkgMzE');

    const record = await recordOf(proxy, reply.id);
    assert.deepEqual(record.trace, { traceId: parent.traceId, spanId: server.spanId });
    assertNoContent(spans);
  });

  test('a streamed chat: stream flag, a first-chunk event and the time to it, usage from the usage chunk', async () => {
    const parent = clientParent();
    const reply = await post(proxy, '/v1/chat/completions', chatBody({ stream: true, stream_options: { include_usage: true } }), {
      traceparent: parent.traceparent,
      'x-test-chunk-delay-ms': '5',
    });
    assert.match(reply.text, /data: \[DONE\]/);
    const { server, client } = await spansOf(receiver, reply.id);
    assert.equal(server.traceId, parent.traceId);
    assert.equal(client.attributes['gen_ai.request.stream'], true);
    const ttfc = client.attributes['gen_ai.response.time_to_first_chunk'];
    assert.ok(typeof ttfc === 'number' && ttfc > 0 && ttfc < 5, `time_to_first_chunk = ${JSON.stringify(ttfc)} s`);
    const first = client.events.find((e) => e.name === 'gen_ai.first_chunk');
    assert.ok(first, 'a gen_ai.first_chunk event');
    assert.ok(client.startNs <= first.timeNs && first.timeNs <= client.endNs);
    assert.equal(client.attributes['gen_ai.usage.input_tokens'], EMULATOR_USAGE.prompt);
    assert.equal(client.attributes['gen_ai.usage.output_tokens'], EMULATOR_USAGE.completion);
    assert.deepEqual(client.attributes['gen_ai.response.finish_reasons'], ['stop']);
    assertNoContent([server, client]);
  });

  test('a Responses API call is a chat with openai.api.type=responses', async () => {
    const reply = await post(proxy, '/v1/responses', { model: 'gpt-4o', input: PROMPT, max_output_tokens: 100 });
    assert.equal(reply.status, 200);
    const { server, client } = await spansOf(receiver, reply.id);
    assert.equal(server.name, 'POST /v1/responses');
    assert.equal(client.name, 'chat gpt-4o');
    assert.equal(client.attributes['gen_ai.operation.name'], 'chat');
    assert.equal(client.attributes['openai.api.type'], 'responses');
    assert.match(str(client, 'gen_ai.response.id'), /^resp_/);
    assert.equal(client.attributes['gen_ai.request.max_tokens'], 100);
    assert.equal(client.attributes['gen_ai.usage.input_tokens'], EMULATOR_USAGE.prompt);
    assertNoContent([server, client]);
  });

  test("an upstream 429 fails the CLIENT span with OpenAI's error code; the SERVER span stays unset (4xx is the caller's)", async () => {
    const reply = await post(proxy, '/v1/chat/completions', chatBody(), { 'x-test-status': '429' });
    assert.equal(reply.status, 429);
    const { server, client } = await spansOf(receiver, reply.id);
    assert.equal(client.status.code, StatusCode.ERROR);
    assert.equal(client.attributes['error.type'], 'rate_limit_exceeded');
    assert.equal(client.attributes['http.response.status_code'], 429);
    assert.equal(server.status.code, StatusCode.UNSET);
    assert.equal(server.attributes['http.response.status_code'], 429);
    assert.equal(server.attributes['error.type'], undefined, 'no error.type where the status is not an error');
  });

  test('an upstream 500 fails both spans', async () => {
    const reply = await post(proxy, '/v1/chat/completions', chatBody(), { 'x-test-status': '500' });
    assert.equal(reply.status, 500);
    const { server, client } = await spansOf(receiver, reply.id);
    assert.equal(client.status.code, StatusCode.ERROR);
    assert.equal(client.attributes['error.type'], 'server_error');
    assert.equal(server.status.code, StatusCode.ERROR);
    assert.equal(server.attributes['error.type'], 'server_error');
  });

  test('a client that hangs up mid-stream is no error', async () => {
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify(chatBody({ stream: true })),
      headers: { 'content-type': 'application/json', 'x-test-chunks': '40', 'x-test-chunk-delay-ms': '20' },
    });
    const id = String(res.headers['x-proxy-request-id']);
    for await (const _chunk of res.body) break; // destroys the body: the connection goes
    const { server, client } = await spansOf(receiver, id);
    assert.equal(server.attributes['openai_proxy.outcome'], 'client_aborted');
    assert.notEqual(server.status.code, StatusCode.ERROR);
    assert.notEqual(client.status.code, StatusCode.ERROR);
    assert.equal(server.attributes['error.type'], undefined);
    assert.equal(client.attributes['error.type'], undefined);
  });

  test('without a client traceparent the exchange starts a new root trace, still propagated upstream', async () => {
    const reply = await post(proxy, '/v1/chat/completions', chatBody());
    const { server, client } = await spansOf(receiver, reply.id);
    assert.equal(server.parentSpanId, undefined);
    assert.match(server.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(server.traceId, '0'.repeat(32));
    assert.equal(client.traceId, server.traceId);
    const seen = upstream.requests.find((r) => r.headers.traceparent?.includes(client.spanId));
    assert.equal(seen?.headers.traceparent, `00-${server.traceId}-${client.spanId}-01`);
    assert.deepEqual((await recordOf(proxy, reply.id)).trace, { traceId: server.traceId, spanId: server.spanId });
  });

  test('no context is tracked, even after spans were exported: the SDK default (AsyncLocalStorage, async hooks on every promise) is not installed', async () => {
    await spansOf(receiver, (await post(proxy, '/v1/chat/completions', chatBody())).id);
    const key = createContextKey('probe');
    assert.equal(context.with(ROOT_CONTEXT.setValue(key, 1), () => context.active()), ROOT_CONTEXT);
  });

  test('a Realtime WebSocket session gets a SERVER and a CLIENT span, and upstream the CLIENT span as parent', async () => {
    const parent = clientParent();
    const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime'], {
      headers: { authorization: 'Bearer sk-tracing-test', traceparent: parent.traceparent },
    });
    const done = new Promise<void>((resolve) =>
      ws.on('message', (data: Buffer) => {
        if ((JSON.parse(data.toString('utf8')) as { type?: string }).type === 'response.done') resolve();
      }),
    );
    await once(ws, 'open');
    ws.send(JSON.stringify({ type: 'response.create' }));
    await done;
    ws.close(1000);
    await once(ws, 'close');
    const spans = await receiver.waitForSpans((s) => s.traceId === parent.traceId, 5000, 2);
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    assert.ok(server && client);
    assert.equal(server.name, 'GET /v1/realtime');
    assert.equal(server.parentSpanId, parent.spanId);
    assert.equal(server.attributes['http.response.status_code'], 101);
    assert.equal(server.status.code, StatusCode.UNSET);
    assert.equal(client.parentSpanId, server.spanId);
    assert.equal(client.status.code, StatusCode.UNSET);
    assert.ok(client.events.some((e) => e.name === 'gen_ai.first_chunk'));
    assert.equal(upstream.wsSessions.at(-1)?.headers.traceparent, `00-${parent.traceId}-${client.spanId}-01`);
  });

  test('an OpenAI key in the path or query is masked in url.path, url.full and url.query; credential parameters redacted', async () => {
    const res = await request(`${proxy.url}/v1/files/${SPAN_KEY}/content?client_secret=s3cr3t&after=${SPAN_KEY}&limit=2`);
    await res.body.dump();
    const { server, client } = await spansOf(receiver, String(res.headers['x-proxy-request-id']));
    assert.equal(server.attributes['url.path'], '/v1/files/sk-[redacted]/content');
    assert.equal(server.attributes['url.query'], 'client_secret=[redacted]&after=sk-[redacted]&limit=2');
    assert.equal(client.attributes['url.full'], `${upstream.url}/v1/files/sk-[redacted]/content?client_secret=[redacted]&after=sk-[redacted]&limit=2`);
    assert.equal(upstream.requests.at(-1)?.url, `/v1/files/${SPAN_KEY}/content?client_secret=s3cr3t&after=${SPAN_KEY}&limit=2`);
  });
});

describe('two more traced proxies in the same process, after the first one shut down', () => {
  let receiverB: OtlpReceiver;
  let receiverC: OtlpReceiver;
  let proxyB: TestProxy;
  let proxyC: TestProxy;

  before(async () => {
    receiverB = await startOtlpReceiver();
    receiverC = await startOtlpReceiver();
    // B: content capture, its own service name, the traces-only endpoint variable, gzip.
    proxyB = await startTestProxy({
      ...tracingEnv(receiverB, {
        OTEL_SERVICE_NAME: 'proxy-b',
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true',
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiverB.url}/v1/traces`,
        OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
      }),
      OTEL_EXPORTER_OTLP_ENDPOINT: '',
    });
    // C, alive at the same time: an upstream that is not there.
    proxyC = await startTestProxy({ ...tracingEnv(receiverC), UPSTREAM_URL: await deadOrigin() });
  });

  after(async () => {
    await proxyB.close();
    await proxyC.close();
    await receiverB.close();
    await receiverC.close();
  });

  test('each SDK exports to its own endpoint, with its own service.name', async () => {
    const [b, c] = await Promise.all([
      post(proxyB, '/v1/chat/completions', chatBody()),
      post(proxyC, '/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' }),
    ]);
    const { server } = await spansOf(receiverB, b.id);
    assert.equal(server.resource['service.name'], 'proxy-b');
    assert.ok(receiverB.exports.length > 0 && receiverB.exports.every((e) => e.contentEncoding === 'gzip'));
    const { server: serverC } = await spansOf(receiverC, c.id);
    assert.equal(serverC.resource['service.name'], 'openai-api-proxy');
    assert.ok(!receiverB.spans.some((s) => s.attributes['openai_proxy.request_id'] === c.id));
    assert.ok(!receiverC.spans.some((s) => s.attributes['openai_proxy.request_id'] === b.id));
  });

  test('OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true puts inputs and outputs on the CLIENT span as JSON', async () => {
    const reply = await post(proxyB, '/v1/chat/completions', chatBody());
    const { server, client } = await spansOf(receiverB, reply.id);
    const input = JSON.parse(str(client, 'gen_ai.input.messages')) as unknown;
    assert.deepEqual(input, [{ role: 'user', parts: [{ type: 'text', content: PROMPT }] }]);
    const output = JSON.parse(str(client, 'gen_ai.output.messages')) as unknown;
    assert.deepEqual(output, [{ role: 'assistant', parts: [{ type: 'text', content: EMULATOR_TEXT }], finish_reason: 'stop' }]);
    assert.equal(server.attributes['gen_ai.input.messages'], undefined, 'content stays on the CLIENT span');
  });

  test('captured content has OpenAI keys masked, in inputs and outputs', async () => {
    const reply = await post(proxyB, '/v1/chat/completions', chatBody({ messages: [{ role: 'user', content: `key ${SPAN_KEY}` }] }), {
      'x-test-text': `back: ${SPAN_KEY}`,
    });
    const { client } = await spansOf(receiverB, reply.id);
    assert.deepEqual(JSON.parse(str(client, 'gen_ai.input.messages')), [{ role: 'user', parts: [{ type: 'text', content: 'key sk-[redacted]' }] }]);
    const output = JSON.parse(str(client, 'gen_ai.output.messages')) as { parts: { content: string }[] }[];
    assert.equal(output[0]?.parts[0]?.content, 'back: sk-[redacted]');
  });

  test('captured content of a streamed Responses call with instructions', async () => {
    const reply = await post(proxyB, '/v1/responses', { model: 'gpt-4o', instructions: 'Be brief.', input: PROMPT, stream: true });
    const { client } = await spansOf(receiverB, reply.id);
    assert.deepEqual(JSON.parse(str(client, 'gen_ai.input.messages')), [
      { role: 'user', parts: [{ type: 'text', content: PROMPT }] },
    ]);
    assert.deepEqual(JSON.parse(str(client, 'gen_ai.system_instructions')), [{ type: 'text', content: 'Be brief.' }]);
    const output = JSON.parse(str(client, 'gen_ai.output.messages')) as { parts: { content: string }[] }[];
    assert.equal(output[0]?.parts[0]?.content, EMULATOR_TEXT);
  });

  test('an unreachable upstream fails both spans with error.type=upstream_unreachable', async () => {
    const parent = clientParent();
    const reply = await post(proxyC, '/v1/chat/completions', chatBody(), { traceparent: parent.traceparent });
    assert.equal(reply.status, 502);
    const spans = await receiverC.waitForSpans((s) => s.traceId === parent.traceId, 5000, 2);
    const server = spans.find((s) => s.kind === SpanKind.SERVER);
    const client = spans.find((s) => s.kind === SpanKind.CLIENT);
    assert.ok(server && client);
    assert.equal(server.status.code, StatusCode.ERROR);
    assert.equal(client.status.code, StatusCode.ERROR);
    assert.equal(server.attributes['error.type'], 'upstream_unreachable');
    assert.equal(client.attributes['error.type'], 'upstream_unreachable');
    assert.equal(server.attributes['http.response.status_code'], 502, 'what the proxy answered');
    assert.equal(client.attributes['http.response.status_code'], undefined, 'upstream never answered');
    assert.equal(client.name, 'chat gpt-4o-mini');
    assertNoContent(spans);
  });
});

describe('settings read by config.ts from the env the runtime was given, not process.env', () => {
  const tracingOf = (env: Record<string, string>): TracingConfig | null => loadConfig(env).tracing;
  test('tracing is on with either endpoint variable, unless disabled', () => {
    assert.equal(tracingOf({}), null);
    assert.equal(tracingOf({ OTEL_EXPORTER_OTLP_ENDPOINT: '' }), null);
    assert.notEqual(tracingOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), null);
    assert.notEqual(tracingOf({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }), null);
    assert.equal(tracingOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }), null);
    assert.equal(tracingOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }), null);
  });

  test('the exporter: base endpoint plus /v1/traces, the traces endpoint as-is, compression, timeout', () => {
    const exporter = (env: Record<string, string>): ReturnType<typeof exporterConfig> => {
      const tracing = tracingOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', ...env });
      assert.ok(tracing);
      return exporterConfig(tracing);
    };
    assert.equal(exporter({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' }).url, 'http://c:4318/v1/traces');
    assert.equal(exporter({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/otlp' }).url, 'http://c:4318/otlp/v1/traces');
    assert.equal(exporter({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://b:9999/traces' }).url, 'http://b:9999/traces');
    assert.equal(exporter({ OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' }).compression, 'gzip');
    assert.equal(exporter({}).compression, undefined);
    assert.equal(exporter({ OTEL_EXPORTER_OTLP_TIMEOUT: '2500' }).timeoutMillis, 2500);
    assert.throws(() => tracingOf({ OTEL_EXPORTER_OTLP_COMPRESSION: 'brotli', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), /^ConfigError: OTEL_EXPORTER_OTLP_COMPRESSION: expected one of gzip, none/);
    assert.throws(() => tracingOf({ OTEL_EXPORTER_OTLP_TIMEOUT: 'soon', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }), /^ConfigError: OTEL_EXPORTER_OTLP_TIMEOUT: expected a whole number/);
    assert.throws(() => tracingOf({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'collector:4318' }), /not an http\(s\) URL/);
    assert.throws(() => tracingOf({ OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' }), /not an http\(s\) URL/);
  });

  test('sensitive query values are redacted from url.query and url.full', () => {
    assert.equal(redactQuery(null), null);
    assert.equal(redactQuery('model=gpt-realtime'), 'model=gpt-realtime');
    assert.equal(redactQuery('api-key=sk-secret&model=m&sig=abc&flag'), 'api-key=[redacted]&model=m&sig=[redacted]&flag');
    assert.equal(redactQuery('Api%2DKey=sk-1&access_token=t&token=u'), 'Api%2DKey=[redacted]&access_token=[redacted]&token=[redacted]');
    assert.equal(redactQuery('x-api-key=a&client_secret=b&max_tokens=5'), 'x-api-key=[redacted]&client_secret=[redacted]&max_tokens=5');
  });
});
