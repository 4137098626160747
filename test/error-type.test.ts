/**
 * One name per failure: the GenAI CLIENT span's `error.type` and the `error_type` label of
 * gen_ai_client_operation_duration_seconds come from one builder (telemetry/error-type.ts) and
 * agree, end to end, for an upstream 429, an upstream 500, a proxy timeout and a client abort.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { upstreamErrorCode } from '../src/capture/facts.ts';
import { errorTypeOf, operationErrorType, OTHER_ERROR_TYPE, type ErrorFacts } from '../src/telemetry/error-type.ts';
import { SpanKind, startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

let upstream: Upstream;
let receiver: OtlpReceiver;
let proxy: TestProxy;

before(async () => {
  upstream = await startUpstream();
  receiver = await startOtlpReceiver();
  proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    UPSTREAM_TIMEOUT_MS: '500',
    METRICS_ENABLED: 'true',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '20',
  });
});

after(async () => {
  await proxy.close();
  await receiver.close();
  await upstream.close();
});

/** The GenAI duration histogram's `_count` samples, by label set. */
async function durationCounts(): Promise<Map<string, number>> {
  const res = await request(`${proxy.adminUrl}/metrics`);
  const counts = new Map<string, number>();
  for (const line of (await res.body.text()).split('\n')) {
    const match = /^gen_ai_client_operation_duration_seconds_count\{([^}]*)\} (\S+)$/.exec(line);
    if (match !== null) counts.set(match[1] as string, Number(match[2]));
  }
  return counts;
}

/** The `error_type` label of the one series the exchange since `before` was counted under. */
async function metricErrorType(before: Map<string, number>): Promise<string> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const grown = [...(await durationCounts())].filter(([labels, n]) => n > (before.get(labels) ?? 0));
    if (grown.length > 0) {
      assert.equal(grown.length, 1, 'one exchange, one series');
      const label = /error_type="([^"]*)"/.exec(grown[0]?.[0] ?? '')?.[1];
      assert.ok(label !== undefined);
      return label;
    }
    if (Date.now() > deadline) assert.fail('the exchange was not counted in gen_ai_client_operation_duration_seconds');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function clientSpan(id: string): Promise<ReceivedSpan> {
  const [server] = await receiver.waitForSpans((s) => s.kind === SpanKind.SERVER && s.attributes['openai_proxy.request_id'] === id);
  assert.ok(server);
  const [client] = await receiver.waitForSpans((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server.spanId);
  assert.ok(client);
  return client;
}

async function chat(headers: Record<string, string>, stream = false): Promise<{ id: string; status: number }> {
  const res = await request(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'gpt-4o-mini', stream, messages: [{ role: 'user', content: 'hi' }] }),
    headers: { authorization: 'Bearer sk-error-type-test', 'content-type': 'application/json', ...headers },
  });
  const id = String(res.headers['x-proxy-request-id']);
  if (stream) {
    for await (const _chunk of res.body) break; // destroys the body: the client hangs up mid-stream
  } else await res.body.dump();
  return { id, status: res.statusCode };
}

describe('the span and the metric name a failure alike', () => {
  const cases: Array<{ name: string; headers: Record<string, string>; stream?: boolean; status: number; errorType: string }> = [
    { name: 'an upstream 429', headers: { 'x-test-status': '429' }, status: 429, errorType: 'rate_limit_exceeded' },
    { name: 'an upstream 500', headers: { 'x-test-status': '500' }, status: 500, errorType: 'server_error' },
    { name: 'a proxy timeout', headers: { 'x-test-hang': 'headers' }, status: 504, errorType: 'upstream_timeout' },
    // A hang-up is no error of the operation's: no error.type, and the metric's empty label.
    { name: 'a client abort', headers: { 'x-test-chunks': '40', 'x-test-chunk-delay-ms': '20' }, stream: true, status: 200, errorType: '' },
  ];
  for (const c of cases) {
    test(`${c.name}: error.type ${JSON.stringify(c.errorType)} on both`, async () => {
      const before = await durationCounts();
      const reply = await chat(c.headers, c.stream);
      assert.equal(reply.status, c.status);
      const span = await clientSpan(reply.id);
      const label = await metricErrorType(before);
      assert.equal(label, span.attributes['error.type'] ?? '', 'metric label == span attribute');
      assert.equal(label, c.errorType);
    });
  }
});

describe('errorTypeOf: the rule', () => {
  const facts = (over: Partial<ErrorFacts> & { status?: number | null; body?: unknown; encoding?: string }): ErrorFacts => ({
    outcome: over.outcome ?? 'ok',
    error: over.error ?? null,
    status: over.status ?? null,
    // As the capture computes it from upstream's answer (capture/facts.ts).
    upstreamErrorCode: (over.encoding ?? 'json') === 'json' && typeof over.body === 'object' && over.body !== null
      ? upstreamErrorCode(over.status ?? null, over.body as Record<string, unknown>)
      : null,
  });
  test("the proxy's own code first, then the provider's code, its type, the status, _OTHER", () => {
    assert.equal(errorTypeOf(facts({ outcome: 'upstream_timeout', error: { type: 'upstream_timeout' }, status: 504 })), 'upstream_timeout');
    assert.equal(errorTypeOf(facts({ status: 429, body: { error: { code: 'rate_limit_exceeded', type: 'requests' } } })), 'rate_limit_exceeded');
    assert.equal(errorTypeOf(facts({ status: 500, body: { error: { code: null, type: 'server_error' } } })), 'server_error');
    assert.equal(errorTypeOf(facts({ status: 502, body: 'Bad Gateway', encoding: 'text' })), '502');
    assert.equal(errorTypeOf(facts({ outcome: 'upstream_reset', status: 200 })), OTHER_ERROR_TYPE);
  });
  test("a client's hang-up: the upstream answer decides, and a success is no failure", () => {
    const aborted = { outcome: 'client_aborted', error: { type: 'client_aborted' } };
    assert.equal(operationErrorType(facts({ ...aborted, status: 200 })), undefined);
    assert.equal(operationErrorType(facts({ ...aborted, status: null })), undefined);
    assert.equal(operationErrorType(facts({ ...aborted, status: 503 })), '503');
    assert.equal(operationErrorType(facts({ status: 200 })), undefined);
  });
});
