/** Prometheus metrics after known traffic: counters, histograms, bounded labels, OpenMetrics exemplars, Server-Timing. */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { waitForRecords } from './support/audit.ts';
import { sample } from './support/prometheus.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { EMULATOR_USAGE, startUpstream, type Upstream } from './support/upstream.ts';

let upstream: Upstream;
let proxy: TestProxy;

before(async () => {
  upstream = await startUpstream();
  proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    METRICS_ENABLED: 'true',
    METRICS_MAX_MODELS: '3',
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: mkdtempSync(join(tmpdir(), 'metrics-')),
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

async function scrape(base: string, accept?: string): Promise<{ text: string; contentType: string }> {
  const res = await request(`${base}/metrics`, { headers: accept === undefined ? {} : { accept } });
  return { text: await res.body.text(), contentType: String(res.headers['content-type']) };
}

async function chat(model: string, headers: Record<string, string> = {}, stream = false): Promise<Awaited<ReturnType<typeof request>>> {
  const res = await request(`${proxy.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model, stream, ...(stream ? { stream_options: { include_usage: true } } : {}), messages: [] }),
    headers: { 'content-type': 'application/json', ...headers },
  });
  await res.body.dump();
  return res;
}

/** Resolves once `requests` exchanges have their records in the journal: their facts reached every consumer. */
async function settle(requests: number): Promise<void> {
  await waitForRecords(proxy, requests);
}

describe('after known traffic', () => {
  let text = '';

  before(async () => {
    await chat('gpt-4o', { 'x-institution-id': 'law' });
    await chat('gpt-4o', { 'x-institution-id': 'law' });
    await chat('gpt-4o', { 'x-institution-id': 'medicine' }, true);
    await chat('gpt-4o-mini', { 'x-test-status': '429' });
    await (await request(`${proxy.url}/v1/embeddings`, { method: 'POST', body: JSON.stringify({ model: 'text-embedding-3-small', input: 'a' }), headers: { 'content-type': 'application/json' } })).body.dump();
    await settle(5);
    // Written, not only appended: the journal holds its lines against the memory budget until then.
    await proxy.runtime.journal?.flush();
    text = (await scrape(proxy.adminUrl)).text;
  });

  test('requests by operation, model, status, institution and outcome', () => {
    assert.equal(sample(text, 'openai_proxy_requests_total', { operation: 'chat.completions', model: 'gpt-4o', status: '200', institution: 'law', outcome: 'ok' }), 2);
    assert.equal(sample(text, 'openai_proxy_requests_total', { model: 'gpt-4o', institution: 'medicine' }), 1);
    // A model seen only in a refused call gets no label of its own.
    assert.equal(sample(text, 'openai_proxy_requests_total', { model: 'other', status: '429', institution: 'none' }), 1);
    assert.equal(sample(text, 'openai_proxy_requests_total', { model: 'gpt-4o-mini' }), undefined);
    assert.equal(sample(text, 'openai_proxy_requests_total', { operation: 'embeddings', model: 'text-embedding-3-small' }), 1);
  });

  test('duration and time-to-first-byte histograms, with LLM-sized buckets', () => {
    assert.equal(sample(text, 'openai_proxy_request_duration_seconds_count', { operation: 'chat.completions', model: 'gpt-4o', status: '200' }), 3);
    assert.equal(sample(text, 'openai_proxy_request_duration_seconds_bucket', { operation: 'chat.completions', model: 'gpt-4o', status: '200', le: '320' }), 3);
    assert.equal(sample(text, 'openai_proxy_upstream_ttfb_seconds_count', { operation: 'chat.completions', model: 'gpt-4o', stream: 'true' }), 1);
    assert.equal(sample(text, 'openai_proxy_overhead_seconds_count', { operation: 'chat.completions' }), 4);
    assert.equal(sample(text, 'gen_ai_client_operation_duration_seconds_count', { gen_ai_operation_name: 'chat', gen_ai_request_model: 'gpt-4o' }), 3);
  });

  test('tokens by model, institution and type', () => {
    assert.equal(sample(text, 'openai_proxy_tokens_total', { model: 'gpt-4o', institution: 'law', type: 'input' }), 2 * EMULATOR_USAGE.prompt);
    assert.equal(sample(text, 'openai_proxy_tokens_total', { model: 'gpt-4o', institution: 'law', type: 'output' }), 2 * EMULATOR_USAGE.completion);
    assert.equal(sample(text, 'openai_proxy_tokens_total', { model: 'gpt-4o', institution: 'medicine', type: 'cached' }), EMULATOR_USAGE.cached);
    assert.equal(sample(text, 'openai_proxy_tokens_total', { model: 'gpt-4o', institution: 'medicine', type: 'reasoning' }), EMULATOR_USAGE.reasoning);
    assert.equal(sample(text, 'gen_ai_client_token_usage_count', { gen_ai_token_type: 'input', gen_ai_request_model: 'gpt-4o' }), 3);
  });

  test('bytes, in-flight, audit pipeline and process metrics', () => {
    assert.ok((sample(text, 'openai_proxy_response_bytes_total', { operation: 'chat.completions' }) ?? 0) > 0);
    assert.ok((sample(text, 'openai_proxy_request_bytes_total', { operation: 'embeddings' }) ?? 0) > 0);
    assert.equal(sample(text, 'openai_proxy_requests_in_flight', { kind: 'http' }), 0);
    assert.equal(sample(text, 'openai_proxy_audit_journal_appends_total'), 5);
    assert.equal(sample(text, 'openai_proxy_audit_journal_writable'), 1);
    assert.ok((sample(text, 'openai_proxy_audit_journal_bytes_total') ?? 0) > 0);
    assert.ok(sample(text, 'process_resident_memory_bytes') !== undefined);
    assert.ok(sample(text, 'nodejs_eventloop_lag_seconds') !== undefined);
    // prom-client's totals are gauges named _total (promtool refuses them); the by-type gauges remain.
    assert.ok(sample(text, 'nodejs_active_handles') !== undefined);
    assert.doesNotMatch(text, /^nodejs_active_(handles|requests|resources)_total\b/m);
    assert.equal(sample(text, 'openai_proxy_metric_series_overflow_total', { metric: 'openai_proxy_requests_total' }), 0);
    assert.equal(sample(text, 'openai_proxy_audit_journal_reopened_total'), 0);
    assert.ok(sample(text, 'openai_proxy_audit_journal_pending_bytes') !== undefined);
  });

  test('the memory budget: its limit, what each holder holds (nothing once records are written), refusals', () => {
    assert.equal(sample(text, 'openai_proxy_memory_budget_bytes'), proxy.config.memoryBudgetBytes);
    for (const holder of ['capture', 'inject', 'journal']) {
      assert.equal(sample(text, 'openai_proxy_memory_used_bytes', { holder }), 0, holder);
      assert.equal(sample(text, 'openai_proxy_memory_refused_total', { holder }), 0, holder);
    }
  });
});

test('upstream failures are counted by outcome', async () => {
  const res = await request(`${proxy.url}/v1/chat/completions`, { method: 'POST', body: '{}', headers: { 'x-test-reset': 'before-headers' } });
  await res.body.dump();
  const deadline = Date.now() + 5000;
  let failures: number | undefined;
  while (failures === undefined && Date.now() < deadline) {
    failures = sample((await scrape(proxy.adminUrl)).text, 'openai_proxy_upstream_failures_total', { outcome: 'upstream_unreachable' });
  }
  assert.equal(failures, 1);
});

test('models beyond METRICS_MAX_MODELS fold into "other"; paths never become labels', async () => {
  for (const model of ['m-1', 'm-2', 'm-3', 'm-4', 'm-5']) await chat(model);
  await (await request(`${proxy.url}/v1/files/file-abc123/content`)).body.dump();
  for (const scan of ['/admin', '/wp_login', '/phpmyadmin']) await (await request(`${proxy.url}${scan}`)).body.dump();
  await settle(15);
  const { text } = await scrape(proxy.adminUrl);
  const models = new Set([...text.matchAll(/openai_proxy_requests_total\{[^}]*model="([^"]+)"/g)].map((m) => m[1]));
  assert.ok(models.has('other'));
  assert.ok(models.size <= 3 + 2, `models: ${[...models].join(', ')}`);
  assert.ok(!text.includes('file-abc123'), 'an id in a path never reaches a label');
  const operations = new Set([...text.matchAll(/openai_proxy_requests_total\{[^}]*operation="([^"]+)"/g)].map((m) => m[1]));
  assert.ok(!operations.has('admin') && !operations.has('wp_login'), 'a path outside the OpenAI API is labelled other');
  assert.ok(operations.has('other') && operations.has('files'));
});

test('Server-Timing tells the client the proxy overhead and the upstream time', async () => {
  const res = await chat('gpt-4o');
  assert.match(String(res.headers['server-timing']), /^proxy;dur=\d+\.\d{3}, upstream;dur=\d+\.\d{3}$/);
});

test('the scraper gets OpenMetrics with trace-id exemplars when tracing is on, and text format stays intact', async () => {
  const sink = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => sink.listen(0, '127.0.0.1', resolve));
  const traced = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    METRICS_ENABLED: 'true',
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(sink.address() as AddressInfo).port}`,
  });
  try {
    const res = await request(`${traced.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify({ model: 'gpt-4o', messages: [] }), headers: { 'content-type': 'application/json' } });
    await res.body.dump();
    let om = { text: '', contentType: '' };
    for (let i = 0; i < 100 && !om.text.includes('trace_id='); i++) {
      om = await scrape(traced.adminUrl, 'application/openmetrics-text; version=1.0.0');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.match(om.contentType, /^application\/openmetrics-text/);
    assert.match(om.text, /openai_proxy_request_duration_seconds_bucket\{[^}]*\} \d+ # \{trace_id="[0-9a-f]{32}",span_id="[0-9a-f]{16}"\}/);
    assert.match(om.text, /^openai_proxy_requests_total\{/m, 'counters keep their _total sample name');
    assert.match(om.text, /# EOF\n$/);
    const plain = await scrape(traced.adminUrl);
    assert.match(plain.contentType, /^text\/plain; version=0\.0\.4/);
    assert.match(plain.text, /^# TYPE openai_proxy_requests_total counter$/m, 'text format names survive an OpenMetrics scrape');
    assert.doesNotMatch(plain.text, /# \{trace_id/);
  } finally {
    await traced.close();
    await new Promise<void>((resolve) => sink.close(() => resolve()));
  }
});

test('in-flight counts the exchanges open at scrape time', async () => {
  const inFlight = async (): Promise<number | undefined> =>
    sample((await scrape(proxy.adminUrl)).text, 'openai_proxy_requests_in_flight', { kind: 'http' });
  const slow = [1, 2].map(() => chat('gpt-4o', { 'x-test-delay-ms': '700' }));
  let seen: number | undefined;
  for (let i = 0; i < 50 && seen !== 2; i++) {
    seen = await inFlight();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.equal(seen, 2);
  assert.equal(sample((await scrape(proxy.adminUrl)).text, 'openai_proxy_requests_in_flight', { kind: 'websocket' }), 0);
  await Promise.all(slow);
  assert.equal(await inFlight(), 0);
});
