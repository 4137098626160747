/**
 * The dashboard against a real Prometheus: the proxy (metrics, audit and tracing on) serves traffic
 * while a `prometheus` child process scrapes its admin port every second; then every PromQL
 * expression of grafana/dashboards/openai-proxy.json must parse and, but for a listed few, return
 * data, the template variables must have values, and the latency exemplars must carry the trace id
 * Grafana links to Tempo. promtool lints the exposition and deploy/prometheus.yml.
 * Skipped, saying so, where the Debian package `prometheus` is not installed.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { parse } from 'yaml';
import { freePort, until } from './support/net.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { findBinary, instantQuery, metricNames, prometheusApi, type ApiResponse } from './support/prometheus.ts';
import { post, realtimeSession } from './support/traffic.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DASHBOARD = join(ROOT, 'grafana', 'dashboards', 'openai-proxy.json');
const DATASOURCES = join(ROOT, 'grafana', 'provisioning', 'datasources', 'datasources.yaml');
const JOB = 'openai-proxy';
/**
 * A policy file, so the cost-and-quota panels have series: the test's institution header believed
 * from loopback (as without a policy), limits on law far above this traffic (quota used ratios, no
 * refusal), and reloads counted.
 */
const POLICY = `version: 1
institutionHeader:
  name: x-institution-id
  trustedFrom: [ 127.0.0.1, "::ffff:127.0.0.1" ]
institutions:
  law:
    limits:
      - { window: month, costUsd: 1000 }
      - { window: day, requests: 1000000 }
  medicine: {}
`;
const SCRAPE_SECONDS = 1;

/**
 * Metrics a dashboard query may legitimately find no series for in this test, and why. A query
 * may come back empty only if it reads one of these; every other query must return data.
 */
const MAY_BE_EMPTY: Record<string, string> = {
  openai_proxy_audit_shipped_total: 'no MongoDB here (MONGODB_URI unset): nothing is shipped',
  openai_proxy_audit_shipper_retries_total: 'no MongoDB here: no shipping attempts',
  openai_proxy_audit_shipper_lag_records: 'no MongoDB here: no shipper to lag',
  openai_proxy_audit_shipper_lag_seconds: 'no MongoDB here: no shipper to lag',
  openai_proxy_audit_shipper_up: 'no MongoDB here: no shipper to be up',
  openai_proxy_observer_failures_total: 'counted only when a capture/audit/telemetry observer throws',
  openai_proxy_quota_rejected_total: 'the limits of POLICY (below) are far above this traffic: nothing is refused',
  nodejs_gc_duration_seconds_sum: 'observed only after a garbage collection, which a short run may not have',
};

const PROMETHEUS = findBinary('prometheus');
const PROMTOOL = findBinary('promtool');

// ---------------------------------------------------------------- the dashboard

interface DashboardTarget {
  refId: string;
  expr?: string;
  exemplar?: boolean;
}
interface Panel {
  title: string;
  type: string;
  targets?: DashboardTarget[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; query: string | { query: string } }[] };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
const variableNames = dashboard.templating.list.map((v) => v.name);
const queries = dashboard.panels
  .flatMap((p) => [p, ...(p.panels ?? [])])
  .flatMap((panel) => (panel.targets ?? []).flatMap((t) => (t.expr === undefined ? [] : [{ where: `"${panel.title}" ${t.refId}`, expr: t.expr, exemplar: t.exemplar === true }])));

/**
 * What Grafana sends for the dashboard's defaults: intervals filled in, every template variable
 * "All" (.*), and `label="$var"` turned into `label=~".*"` as Grafana does for multi-value/All.
 */
function toPromQL(expr: string): string {
  let q = expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__range_ms', '300000')
    .replaceAll('$__range_s', '300')
    .replaceAll('$__range', '5m')
    .replaceAll('$__interval_ms', '15000')
    .replaceAll('$__interval', '15s');
  for (const name of variableNames) {
    const ref = `(?:\\$${name}\\b|\\$\\{${name}(?::\\w+)?\\}|\\[\\[${name}\\]\\])`;
    q = q.replace(new RegExp(`([a-zA-Z_][a-zA-Z0-9_]*)\\s*(=~|!~|!=|=)\\s*"${ref}"`, 'g'), (_m, label: string, op: string) => {
      const regexOp = op === '=' ? '=~' : op === '!=' ? '!~' : op;
      return `${label}${regexOp}".*"`;
    });
    q = q.replace(new RegExp(ref, 'g'), '.*');
  }
  assert.doesNotMatch(q, /\$/, `unsubstituted Grafana variable in ${q}`);
  return q;
}

// ---------------------------------------------------------------- Prometheus HTTP API

let promUrl = '';

function api<T>(path: string, params: Record<string, string | string[]>): Promise<ApiResponse<T>> {
  return prometheusApi<T>(promUrl, path, params);
}

function query(promql: string): ReturnType<typeof instantQuery> {
  return instantQuery(promUrl, promql);
}

// ---------------------------------------------------------------- traffic



/** One round of every kind of exchange the dashboard charts; returns how many exchanges it made. */
async function round(proxy: TestProxy): Promise<number> {
  const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
  const statuses = await Promise.all([
    post(proxy, '/v1/chat/completions', chat, { 'x-institution-id': 'law' }),
    post(proxy, '/v1/chat/completions', { ...chat, stream: true, stream_options: { include_usage: true } }, { 'x-institution-id': 'medicine' }),
    post(proxy, '/v1/chat/completions', { ...chat, model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true } }, { 'x-institution-id': 'law' }),
    post(proxy, '/v1/responses', { model: 'gpt-4o-mini', input: 'hi' }, { 'x-institution-id': 'medicine' }),
    post(proxy, '/v1/embeddings', { model: 'text-embedding-3-small', input: 'a' }),
    // A model the price table does not know: its cost is unknown.
    post(proxy, '/v1/chat/completions', { ...chat, model: 'unpriced-test-model' }, { 'x-institution-id': 'law' }),
    post(proxy, '/v1/chat/completions', chat, { 'x-test-status': '429' }),
    post(proxy, '/v1/chat/completions', chat, { 'x-test-status': '500' }),
    post(proxy, '/v1/chat/completions', chat, { 'x-test-reset': 'before-headers' }),
    realtimeSession(proxy),
  ]);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 429, 500, 502, 101]);
  return statuses.length;
}

// ---------------------------------------------------------------- the run

describe('the dashboard on a real Prometheus', { timeout: 60_000 }, () => {
  let upstream: Upstream | undefined;
  let proxy: TestProxy | undefined;
  let otlpSink: http.Server | undefined;
  let prometheus: ChildProcess | undefined;
  let promOutput = '';
  const dirs: string[] = [];

  before(async () => {
    if (PROMETHEUS === null) return;
    upstream = await startUpstream();
    // Tracing on, so the registry speaks OpenMetrics and the histograms carry trace-id exemplars;
    // the spans themselves go to a sink that accepts anything.
    otlpSink = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    });
    await new Promise<void>((resolve) => otlpSink?.listen(0, '127.0.0.1', resolve));
    const otlp = `http://127.0.0.1:${(otlpSink.address() as AddressInfo).port}`;
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = otlp; // the exporter reads process.env itself
    const auditDir = mkdtempSync(join(tmpdir(), 'prometheus-audit-'));
    dirs.push(auditDir);
    const policyDir = mkdtempSync(join(tmpdir(), 'prometheus-policy-'));
    dirs.push(policyDir);
    const policyFile = join(policyDir, 'policy.yaml');
    writeFileSync(policyFile, POLICY);
    proxy = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      METRICS_ENABLED: 'true',
      AUDIT_ENABLED: 'true',
      AUDIT_DIR: auditDir,
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp,
      POLICY_FILE: policyFile,
    });

    const promDir = mkdtempSync(join(tmpdir(), 'prometheus-'));
    dirs.push(promDir);
    const target = new URL(proxy.adminUrl).host;
    const config = join(promDir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global:',
        `  scrape_interval: ${SCRAPE_SECONDS}s`,
        `  scrape_timeout: ${SCRAPE_SECONDS}s`,
        `  evaluation_interval: ${SCRAPE_SECONDS}s`,
        'scrape_configs:',
        `  - job_name: ${JOB}`,
        '    static_configs:',
        `      - targets: ["${target}"]`,
        '',
      ].join('\n'),
    );
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(promDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--enable-feature=exemplar-storage',
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const collect = (chunk: Buffer): void => void (promOutput += chunk.toString('utf8'));
    prometheus.stdout?.on('data', collect);
    prometheus.stderr?.on('data', collect);
    const ready = async (): Promise<boolean> => {
      if (prometheus?.exitCode !== null) throw new Error(`prometheus exited: ${promOutput}`);
      return request(`${promUrl}/-/ready`).then(
        async (r) => (await r.body.dump(), r.statusCode === 200),
        () => false,
      );
    };
    await until(ready, 15_000, 'Prometheus to be ready');
    // Prometheus hands new targets to the scraper a few seconds after start: wait for the first scrape.
    const lastScrape = async (): Promise<number> => {
      const res = await query(`timestamp(up{job="${JOB}"})`);
      return Number(res.data.result[0]?.value[1] ?? 0);
    };
    await until(async () => (await lastScrape()) > 0, 20_000, `the first scrape (prometheus output: ${promOutput})`);

    // Traffic in rounds while Prometheus scrapes, so counters and buckets rise between scrapes.
    let exchanges = 0;
    for (let i = 0; i < 4; i++) {
      exchanges += await round(proxy);
      const roundDone = Date.now() / 1000;
      await until(async () => (await lastScrape()) > roundDone, 10_000, `a scrape after round ${i + 1}`);
    }
    const journal = proxy.runtime.journal;
    await until(() => (journal?.stats.appended ?? 0) >= exchanges, 10_000, 'audit records of the traffic');
    // Then at least two scrapes that saw all of it.
    const trafficDone = Date.now() / 1000;
    let first = 0;
    await until(async () => (first = await lastScrape()) > trafficDone, 10_000, 'a scrape after the traffic');
    await until(async () => (await lastScrape()) > first, 10_000, 'a second scrape after the traffic');
  });

  after(async () => {
    if (prometheus !== undefined && prometheus.exitCode === null) {
      const exited = once(prometheus, 'exit');
      prometheus.kill('SIGTERM');
      const timer = setTimeout(() => prometheus?.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await proxy?.close();
    await upstream?.close();
    if (otlpSink !== undefined) await new Promise<void>((resolve) => otlpSink?.close(() => resolve()));
    delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  test('Prometheus scrapes the proxy (OpenMetrics with exemplars) without errors', async (t) => {
    if (PROMETHEUS === null) return t.skip('prometheus binary not found');
    const targets = await api<{ activeTargets: { health: string; lastError: string; scrapePool: string }[] }>('/api/v1/targets', {});
    const target = targets.data.activeTargets.find((a) => a.scrapePool === JOB);
    assert.equal(target?.health, 'up', `scrape error: ${target?.lastError}`);
  });

  test('every PromQL expression of the dashboard parses, and all but the listed few return data', async (t) => {
    if (PROMETHEUS === null) return t.skip('prometheus binary not found');
    const problems: string[] = [];
    const empty: string[] = [];
    for (const { where, expr } of queries) {
      const promql = toPromQL(expr);
      const res = await query(promql);
      if (res.status !== 'success') {
        problems.push(`${where}: ${res.errorType}: ${res.error} in ${promql}`);
        continue;
      }
      const excused = metricNames(expr).filter((name) => name in MAY_BE_EMPTY);
      if (res.data.result.length === 0) {
        if (excused.length > 0) empty.push(`${where} (${excused.map((n) => `${n}: ${MAY_BE_EMPTY[n]}`).join('; ')})`);
        else problems.push(`${where}: no data for ${promql}`);
        continue;
      }
      // A quantile or ratio of series that did not move is NaN: the traffic must have moved them.
      if (excused.length === 0 && !res.data.result.some((s) => Number.isFinite(Number(s.value[1])))) {
        problems.push(`${where}: only NaN/Inf for ${promql}`);
      }
    }
    t.diagnostic(`${queries.length} expressions; empty, as allowed: ${empty.length === 0 ? 'none' : empty.join(' | ')}`);
    assert.deepEqual(problems, []);
  });

  test('the core panels show the traffic that was sent', async (t) => {
    if (PROMETHEUS === null) return t.skip('prometheus binary not found');
    const values = async (promql: string): Promise<Map<string, number>> => {
      const res = await query(promql);
      assert.equal(res.status, 'success', promql);
      return new Map(res.data.result.map((s) => [Object.values(s.metric).join(','), Number(s.value[1])]));
    };
    const statuses = await values(`sum by (status) (increase(openai_proxy_requests_total{job="${JOB}"}[5m]))`);
    for (const status of ['200', '429', '500', '502', '101']) assert.ok(statuses.has(status), `status ${status} charted (${[...statuses.keys()].join(' ')})`);
    const institutions = await values(`topk(10, sum by (institution) (increase(openai_proxy_tokens_total{type=~"input|output"}[5m])))`);
    assert.ok(institutions.has('law') && institutions.has('medicine'), [...institutions.keys()].join(' '));
    const failures = await values('sum by (outcome) (increase(openai_proxy_upstream_failures_total[5m]))');
    assert.ok(failures.has('upstream_unreachable'), [...failures.keys()].join(' '));
    const ttft = await values('histogram_quantile(0.9, sum by (le) (rate(openai_proxy_upstream_ttfb_seconds_bucket{stream="true"}[1m])))');
    assert.ok([...ttft.values()].every((v) => v > 0 && v < 5), `TTFT p90 ${[...ttft.values()].join(' ')}`);
  });

  test('every template variable has values', async (t) => {
    if (PROMETHEUS === null) return t.skip('prometheus binary not found');
    for (const v of dashboard.templating.list) {
      const text = typeof v.query === 'string' ? v.query : v.query.query;
      const match = /^label_values\((?:(.+),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(text);
      assert.ok(match !== null, `variable ${v.name}: ${text}`);
      const params: Record<string, string> = match[1] === undefined ? {} : { 'match[]': toPromQL(match[1]) };
      const res = await api<string[]>(`/api/v1/label/${match[2]}/values`, params);
      assert.equal(res.status, 'success', `variable ${v.name}: ${res.error}`);
      assert.ok(res.data.length > 0, `variable ${v.name} has no values`);
      t.diagnostic(`$${v.name}: ${res.data.join(', ')}`);
    }
  });

  test('latency exemplars carry the trace id under the label the Grafana data source links to Tempo', async (t) => {
    if (PROMETHEUS === null) return t.skip('prometheus binary not found');
    const datasources = parse(readFileSync(DATASOURCES, 'utf8')) as { datasources: { uid: string; jsonData?: { exemplarTraceIdDestinations?: { name: string }[] } }[] };
    const label = datasources.datasources.find((d) => d.uid === 'prometheus')?.jsonData?.exemplarTraceIdDestinations?.[0]?.name;
    assert.equal(label, 'trace_id');
    const now = Date.now() / 1000;
    const withExemplars = [...new Set(queries.filter((q) => q.exemplar).flatMap((q) => metricNames(q.expr)))];
    assert.ok(withExemplars.length > 0, 'some panels ask for exemplars');
    for (const metric of withExemplars) {
      const res = await api<{ exemplars: { labels: Record<string, string> }[] }[]>('/api/v1/query_exemplars', {
        query: `${metric}{job="${JOB}"}`,
        start: String(now - 300),
        end: String(now + 60),
      });
      assert.equal(res.status, 'success', res.error);
      const ids = res.data.flatMap((series) => series.exemplars.map((e) => e.labels[label]));
      assert.ok(ids.length > 0, `${metric}: no exemplars stored`);
      for (const id of ids) assert.match(id ?? '', /^[0-9a-f]{32}$/, `${metric}: exemplar ${label}`);
    }
  });

  test('promtool check metrics passes on the whole exposition, process metrics included', async (t) => {
    if (PROMTOOL === null || proxy === undefined) return t.skip(PROMTOOL === null ? 'promtool binary not found' : 'prometheus binary not found');
    // The text format: promtool lints only that (fed OpenMetrics, it misses every counter's HELP,
    // which OpenMetrics names without _total); Prometheus itself scraped OpenMetrics above.
    const text = await (await request(`${proxy.adminUrl}/metrics`)).body.text();
    const run = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 15_000 });
    const report = `${run.stdout}${run.stderr}`.trim();
    t.diagnostic(`promtool check metrics: exit ${run.status}`);
    for (const line of report.split('\n').filter((l) => l.trim() !== '')) t.diagnostic(`  ${line}`);
    assert.equal(run.status, 0, `promtool exit ${run.status}: ${report}`);
    assert.equal(report, '', 'lint problems');
  });

  test('promtool check config passes on deploy/prometheus.yml', (t) => {
    if (PROMTOOL === null) return t.skip('promtool binary not found');
    const run = spawnSync(PROMTOOL, ['check', 'config', '--syntax-only', join(ROOT, 'deploy', 'prometheus.yml')], { encoding: 'utf8', timeout: 15_000 });
    assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
  });
});
