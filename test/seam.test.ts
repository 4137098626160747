/**
 * The seam between the capture layer and its consumers: metrics and tracing get what they need
 * from the capture's facts, not from the audit record. With audit off nothing of a body is kept;
 * a record that fails to build leaves no span open; each exchange's facts are computed once and
 * the same facts reach audit, metrics and tracing.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { HeaderRedactor } from '../src/audit/record/identity.ts';
import type { FactsConsumer } from '../src/capture/capture-observer.ts';
import type { ExchangeFacts } from '../src/capture/facts.ts';
import { SpanKind, startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { EMULATOR_USAGE, startUpstream, type Upstream } from './support/upstream.ts';

let upstream: Upstream;
let receiver: OtlpReceiver;
const dirs: string[] = [];

before(async () => {
  upstream = await startUpstream();
  receiver = await startOtlpReceiver();
});

after(async () => {
  await receiver.close();
  await upstream.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function auditEnv(): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'seam-test-'));
  dirs.push(dir);
  return { AUDIT_ENABLED: 'true', AUDIT_DIR: dir };
}

const TELEMETRY = (): Record<string, string> => ({
  UPSTREAM_URL: upstream.url,
  METRICS_ENABLED: 'true',
  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
  OTEL_BSP_SCHEDULE_DELAY: '20',
});

/** A chat call with a body well past a few bytes; returns the proxy's request id. */
async function chat(proxy: TestProxy, stream: boolean): Promise<string> {
  const body = JSON.stringify({
    model: 'gpt-4o-mini',
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
    temperature: 0.25,
    messages: [{ role: 'user', content: 'x'.repeat(20_000) }],
  });
  const res = await request(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk-seam-test', 'content-type': 'application/json', 'accept-encoding': 'identity' },
    body,
  });
  assert.equal(res.statusCode, 200);
  await res.body.text();
  return String(res.headers['x-proxy-request-id']);
}

async function clientSpan(id: string): Promise<Record<string, unknown>> {
  const [server] = await receiver.waitForSpans((s) => s.kind === SpanKind.SERVER && s.attributes['openai_proxy.request_id'] === id);
  assert.ok(server !== undefined);
  const [client] = await receiver.waitForSpans((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server.spanId);
  assert.ok(client !== undefined);
  return client.attributes;
}

test('metrics and tracing with audit off keep no body copy, and still see model, usage and parameters', async () => {
  const proxy = await startTestProxy(TELEMETRY());
  try {
    const ids = [await chat(proxy, false), await chat(proxy, true)];
    for (const id of ids) {
      const client = await clientSpan(id);
      assert.equal(client['gen_ai.request.model'], 'gpt-4o-mini');
      assert.equal(client['gen_ai.usage.input_tokens'], EMULATOR_USAGE.prompt);
      assert.equal(client['gen_ai.usage.output_tokens'], EMULATOR_USAGE.completion);
      assert.equal(client['gen_ai.request.temperature'], 0.25);
    }
    const { body } = (await proxy.runtime.metrics?.render(false)) ?? { body: '' };
    assert.match(body, /openai_proxy_tokens_total\{model="gpt-4o-mini",institution="[^"]*",type="input"\} 22/);
    assert.match(body, /openai_proxy_request_bytes_total\{operation="chat.completions"\} \d{5}/);
    // Nothing was ever reserved for a copy of a body: the capture kept none.
    assert.equal(proxy.runtime.memory.stats.peakBytes, 0, 'no body bytes held');
  } finally {
    await proxy.close();
  }
});

test('the same calls with audit on do hold their bodies while the record is built (the probe above can see them)', async () => {
  const proxy = await startTestProxy({ ...TELEMETRY(), ...auditEnv() });
  try {
    await chat(proxy, false);
    await proxy.runtime.capture?.close();
    assert.ok(proxy.runtime.memory.stats.peakBytes > 20_000, `peak ${proxy.runtime.memory.stats.peakBytes}`);
  } finally {
    await proxy.close();
  }
});

test('a record that fails to build leaves no span open: both spans end and are exported', async () => {
  const proxy = await startTestProxy({ ...TELEMETRY(), ...auditEnv() });
  const redactRaw = Object.getOwnPropertyDescriptor(HeaderRedactor.prototype, 'redactRaw');
  assert.ok(redactRaw !== undefined);
  HeaderRedactor.prototype.redactRaw = () => {
    throw new Error('injected: the record cannot be built');
  };
  let id: string;
  try {
    id = await chat(proxy, false);
  } finally {
    // Closing builds what waits (the record fails) and flushes the spans that ended.
    await proxy.close().finally(() => Object.defineProperty(HeaderRedactor.prototype, 'redactRaw', redactRaw));
  }
  const server = receiver.spans.find((s) => s.kind === SpanKind.SERVER && s.attributes['openai_proxy.request_id'] === id);
  assert.ok(server !== undefined, 'the server span ended');
  const client = receiver.spans.find((s) => s.kind === SpanKind.CLIENT && s.parentSpanId === server.spanId);
  assert.ok(client !== undefined, 'the client span ended');
  assert.equal(client.attributes['gen_ai.usage.input_tokens'], EMULATOR_USAGE.prompt);
  assert.equal(proxy.runtime.journal?.stats.appended, 0, 'no record was written');
});

test("each exchange's facts are computed once: audit, metrics and tracing get the same facts, once each", async () => {
  const proxy = await startTestProxy({ ...TELEMETRY(), ...auditEnv() });
  const seen = new Map<string, Map<string, ExchangeFacts[]>>();
  const { recorder, metrics, tracing } = proxy.runtime;
  assert.ok(recorder !== null && metrics !== null && tracing !== null);
  for (const [name, consumer] of [['audit', recorder], ['metrics', metrics], ['tracing', tracing]] as Array<[string, FactsConsumer]>) {
    const facts = consumer.facts.bind(consumer);
    consumer.facts = (exchange, given, captured) => {
      const byConsumer = seen.get(exchange.id) ?? new Map<string, ExchangeFacts[]>();
      seen.set(exchange.id, byConsumer);
      byConsumer.set(name, [...(byConsumer.get(name) ?? []), given]);
      facts(exchange, given, captured);
    };
  }
  try {
    const ids = [await chat(proxy, false), await chat(proxy, true)];
    await proxy.runtime.capture?.close();
    for (const id of ids) {
      const byConsumer = seen.get(id);
      assert.ok(byConsumer !== undefined, `facts of ${id}`);
      const [audit, metricsFacts, tracingFacts] = ['audit', 'metrics', 'tracing'].map((name) => byConsumer.get(name) ?? []);
      assert.equal(audit?.length, 1);
      assert.equal(metricsFacts?.length, 1);
      assert.equal(tracingFacts?.length, 1);
      assert.equal(metricsFacts?.[0], audit?.[0], 'metrics got the very facts audit got');
      assert.equal(tracingFacts?.[0], audit?.[0], 'tracing got the very facts audit got');
      assert.equal(audit?.[0]?.requestModel, 'gpt-4o-mini');
    }
  } finally {
    await proxy.close();
  }
});
