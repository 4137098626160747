/**
 * METRICS_MAX_SERIES_PER_METRIC: label combinations many times the cap (institutions × models ×
 * operations × statuses), through the metrics' facts API and through a running proxy; no metric
 * exposes more series than the cap, totals stay exact, the folded observations are counted, and
 * promtool finds nothing to lint in the whole exposition, process metrics included.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, test } from 'node:test';
import { request } from 'undici';
import type { OpenAIInfo } from '../src/audit/record/record.ts';
import type { ExchangeFacts } from '../src/capture/facts.ts';
import { genAiOperationName } from '../src/capture/operation.ts';
import { loadConfig } from '../src/config.ts';
import { SeriesCap, OTHER } from '../src/telemetry/labels.ts';
import { MemoryBudget } from '../src/memory-budget.ts';
import { ProxyMetrics } from '../src/telemetry/metrics.ts';
import { BASE_ENV, startTestProxy } from './support/proxy.ts';
import { families, total, type Sample } from './support/prometheus.ts';
import { factsOf, openaiInfo, plainExchange } from './support/records.ts';
import { EMULATOR_USAGE, startUpstream } from './support/upstream.ts';

// ---------------------------------------------------------------- the exposition, parsed

function assertCapped(all: Map<string, Sample[]>, cap: number): void {
  const over = [...all].filter(([, samples]) => samples.length > cap).map(([family, samples]) => `${family}: ${samples.length}`);
  assert.deepEqual(over, [], `metrics with more than ${cap} series`);
}

// ---------------------------------------------------------------- SeriesCap alone

describe('SeriesCap', () => {
  test('admits combinations up to the cap, then folds the labels outside `keep`, then all into one series', () => {
    let folds = 0;
    const cap = new SeriesCap(['model', 'institution', 'status'] as const, { maxCombinations: 50, keep: ['status'], onFold: () => folds++ });
    const seen = new Map<string, number>();
    const byStatus = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const status = String([200, 400, 429, 500][i % 4]);
      const labels = cap.labels({ model: `m${i % 37}`, institution: `i${i % 101}`, status });
      const key = JSON.stringify(labels);
      seen.set(key, (seen.get(key) ?? 0) + 1);
      byStatus.set(String(labels.status), (byStatus.get(String(labels.status)) ?? 0) + 1);
      assert.ok(cap.size <= 50, `size ${cap.size} after ${i + 1}`);
    }
    assert.ok(seen.size <= 50, `${seen.size} combinations`);
    assert.equal(cap.size, seen.size);
    // The first 50 - ceil(50/10) - 1 = 44 combinations are kept as they came; every later one is folded.
    const own = [...seen.keys()].filter((k) => !k.includes(`"${OTHER}"`));
    assert.equal(own.length, 44);
    assert.equal(folds, 3000 - own.reduce((sum, k) => sum + (seen.get(k) ?? 0), 0));
    // Folded, they keep their status: each status' total is exact.
    assert.deepEqual(Object.fromEntries(byStatus), { 200: 750, 400: 750, 429: 750, 500: 750 });
    assert.ok(seen.has(JSON.stringify({ model: OTHER, institution: OTHER, status: '429' })));
  });

  test('a kept label with more values than the reserve ends in the all-`other` series, still under the cap', () => {
    let folds = 0;
    const cap = new SeriesCap(['model', 'status'] as const, { maxCombinations: 20, keep: ['status'], onFold: () => folds++ });
    let allOther = 0;
    for (let i = 0; i < 2000; i++) {
      const labels = cap.labels({ model: `m${i}`, status: 100 + (i % 500) });
      if (labels.model === OTHER && labels.status === OTHER) allOther++;
    }
    assert.ok(cap.size <= 20);
    assert.ok(allOther > 0, 'the last slot took the rest');
    assert.equal(folds, 2000 - (20 - Math.ceil(20 / 10) - 1));
  });
});

// ---------------------------------------------------------------- the metrics, from records

const STATUSES = [200, 201, 202, 204, 400, 401, 403, 404, 409, 422, 429, 500];
const OPERATIONS = [
  'chat.completions', 'responses', 'completions', 'embeddings', 'audio.speech', 'audio.transcriptions', 'audio.translations',
  'images.generations', 'images.edits', 'images.variations', 'files', 'files.content', 'batches', 'batches.cancel', 'models',
  'moderations', 'realtime', 'realtime.client_secrets', 'uploads', 'uploads.parts', 'uploads.complete', 'vector_stores',
  'vector_stores.files', 'vector_stores.file_batches', 'vector_stores.search', 'assistants', 'threads', 'threads.messages',
  'threads.runs', 'threads.runs.steps', 'fine_tuning.jobs', 'fine_tuning.jobs.events', 'fine_tuning.checkpoints',
  'conversations', 'conversations.items', 'containers', 'containers.files', 'evals', 'evals.runs', 'videos',
  'organization.usage', 'projects', 'webhooks', 'responses.input_items',
];

function openai(operation: string, model: string): OpenAIInfo {
  return openaiInfo({
    operation,
    requestModel: model,
    responseModel: model,
    usage: { inputTokens: 11, outputTokens: 7, totalTokens: 18, cachedTokens: 3, reasoningTokens: 2 },
    responseId: null,
    outputText: null,
    upstreamRequestId: null,
    organization: null,
    processingMs: null,
  });
}

const EXCHANGE = plainExchange('POST', '/v1/x');

/** The facts the capture hands metrics for one such exchange (capture/facts.ts). */
function facts(operation: string, model: string, institution: string, status: number): ExchangeFacts {
  return factsOf(
    {
      ...openai(operation, model),
      status,
      upstreamStatus: status,
      durationMs: 50,
      ttfbMs: 20,
      overheadMs: 0.1,
      requestBytes: 10,
      responseBytes: 10,
      error: status < 400 ? null : { type: `http_${status}`, message: 'refused' },
    },
    EXCHANGE,
    { apiKey: null, institution, institutionSource: 'header' },
  );
}

test('through facts(): 100 institutions × 44 operations × 12 statuses × 50 models stay within the cap, totals exact, folds counted', async () => {
  const CAP = 300;
  const config = loadConfig({ ...BASE_ENV, METRICS_ENABLED: 'true', METRICS_MAX_SERIES_PER_METRIC: String(CAP) });
  assert.equal(config.metrics.maxSeriesPerMetric, CAP);
  assert.equal(loadConfig(BASE_ENV).metrics.maxSeriesPerMetric, 5000, 'the default');
  assert.throws(() => loadConfig({ ...BASE_ENV, METRICS_MAX_SERIES_PER_METRIC: '99' }), /METRICS_MAX_SERIES_PER_METRIC: 99 is out of range/);
  const metrics = new ProxyMetrics(config.metrics, { exemplars: false, auditStats: () => ({ journal: null, shipper: null }), memoryStats: () => new MemoryBudget(1024 * 1024).stats });
  const N = 4000;
  const byStatus = new Map<string, number>();
  const sent = new Set<string>();
  let inference = 0;
  for (let i = 0; i < N; i++) {
    // Models are first named by accepted calls, so no label is `other` unless the cap folded it.
    const model = `model-${i % 50}`;
    const status = i < 50 ? 200 : (STATUSES[Math.floor(i / 7) % STATUSES.length] as number);
    const operation = OPERATIONS[i % OPERATIONS.length] as string;
    const institution = `inst-${(i * 13) % 100}`;
    metrics.facts(EXCHANGE, facts(operation, model, institution, status));
    byStatus.set(String(status), (byStatus.get(String(status)) ?? 0) + 1);
    sent.add(`${operation}|${model}|${status}|${institution}`);
    if (genAiOperationName(operation) !== null) inference++;
  }
  assert.ok(sent.size > 10 * CAP, `${sent.size} combinations sent`);
  const all = families((await metrics.render(false)).body);
  assertCapped(all, CAP);

  const requests = all.get('openai_proxy_requests_total');
  assert.equal(total(requests, 'openai_proxy_requests_total'), N, 'every exchange counted once');
  for (const [status, count] of byStatus) {
    assert.equal(total(requests, 'openai_proxy_requests_total', (l) => l.status === status), count, `status ${status}`);
  }
  const own = total(requests, 'openai_proxy_requests_total', (l) => l.operation !== OTHER && l.model !== OTHER && l.institution !== OTHER);
  const overflow = all.get('openai_proxy_metric_series_overflow_total');
  const folded = total(overflow, 'openai_proxy_metric_series_overflow_total', (l) => l.metric === 'openai_proxy_requests_total');
  assert.ok(folded > 0);
  assert.equal(own + folded, N, 'every observation is either under its own labels or counted as folded');

  const duration = all.get('openai_proxy_request_duration_seconds');
  assert.equal(total(duration, 'openai_proxy_request_duration_seconds_count'), N);
  assert.equal(total(duration, 'openai_proxy_request_duration_seconds_bucket', (l) => l.le === '+Inf'), N);
  assert.ok((duration?.length ?? 0) > CAP / 2, 'the histogram used its room');
  assert.ok(total(overflow, 'openai_proxy_metric_series_overflow_total', (l) => l.metric === 'openai_proxy_request_duration_seconds') > 0);

  const tokens = all.get('openai_proxy_tokens_total');
  for (const [type, each] of [['input', 11], ['output', 7], ['cached', 3], ['reasoning', 2]] as const) {
    assert.equal(total(tokens, 'openai_proxy_tokens_total', (l) => l.type === type), N * each, `${type} tokens`);
  }
  const genai = all.get('gen_ai_client_token_usage');
  // 17 series a combination leave this histogram 17 combinations: its folded ones outgrow the reserve
  // and end in the all-`other` series, so only the metric's total is exact.
  assert.equal(total(genai, 'gen_ai_client_token_usage_sum'), (11 + 7) * inference);
  assert.equal(total(all.get('gen_ai_client_operation_duration_seconds'), 'gen_ai_client_operation_duration_seconds_count'), inference);
  assert.equal(total(all.get('openai_proxy_request_bytes_total'), 'openai_proxy_request_bytes_total'), 10 * N);
});

// ---------------------------------------------------------------- a running proxy, and promtool

function findBinary(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not here
    }
  }
  return null;
}

test('through the proxy: mixed institutions, models and statuses stay within the cap, and promtool passes the whole scrape', async (t) => {
  const CAP = 100;
  const upstream = await startUpstream();
  const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, METRICS_ENABLED: 'true', METRICS_MAX_SERIES_PER_METRIC: String(CAP) });
  try {
    const statuses = ['200', '400', '429', '500'];
    const N = 320;
    const byStatus = new Map<string, number>();
    const jobs = Array.from({ length: N }, (_, i) => async (): Promise<void> => {
      const status = statuses[Math.floor(i / 3) % statuses.length] as string;
      const res = await request(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: `model-${i % 8}`, messages: [] }),
        headers: { 'content-type': 'application/json', 'x-institution-id': `inst-${i % 40}`, ...(status === '200' ? {} : { 'x-test-status': status }) },
      });
      await res.body.dump();
      assert.equal(String(res.statusCode), status);
      byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    });
    // Eight at a time: a bounded load, fast on a loaded machine.
    const queue = [...jobs];
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let job = queue.shift(); job !== undefined; job = queue.shift()) await job();
    }));

    const scrape = async (): Promise<string> => (await request(`${proxy.adminUrl}/metrics`)).body.text();
    let text = await scrape();
    const deadline = Date.now() + 10_000;
    while (total(families(text).get('openai_proxy_requests_total'), 'openai_proxy_requests_total') < N) {
      if (Date.now() > deadline) throw new Error('the exchanges were not all counted');
      await new Promise((resolve) => setTimeout(resolve, 10));
      text = await scrape();
    }
    const all = families(text);
    assertCapped(all, CAP);
    const requests = all.get('openai_proxy_requests_total');
    assert.equal(total(requests, 'openai_proxy_requests_total'), N);
    for (const [status, count] of byStatus) assert.equal(total(requests, 'openai_proxy_requests_total', (l) => l.status === status), count);
    const ok = byStatus.get('200') ?? 0;
    assert.equal(total(all.get('openai_proxy_tokens_total'), 'openai_proxy_tokens_total', (l) => l.type === 'input'), ok * EMULATOR_USAGE.prompt);
    const overflow = all.get('openai_proxy_metric_series_overflow_total');
    assert.ok(total(overflow, 'openai_proxy_metric_series_overflow_total', (l) => l.metric === 'openai_proxy_requests_total') > 0);
    assert.ok(total(overflow, 'openai_proxy_metric_series_overflow_total', (l) => l.metric === 'openai_proxy_request_duration_seconds') > 0);

    const promtool = findBinary('promtool');
    if (promtool === null) return t.skip('promtool binary not found');
    // promtool reads the text format only: fed OpenMetrics it would miss the counters' HELP.
    const run = spawnSync(promtool, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 15_000 });
    assert.equal(run.status, 0, `promtool check metrics: exit ${run.status}: ${run.stdout}${run.stderr}`);
    assert.equal(`${run.stdout}${run.stderr}`.trim(), '');
  } finally {
    await proxy.close();
    await upstream.close();
  }
});
