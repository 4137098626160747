/**
 * The operator-facing artefacts (deploy/, grafana/) checked without Docker or Kubernetes: every file
 * parses, ports, paths, probes, grace periods and variable names agree with the code, the image's
 * CMD and HEALTHCHECK work on a real process, and every metric and label the dashboard queries is
 * one the running proxy actually exposes.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { parseAllDocuments } from 'yaml';
import { RUNTIME_FLAGS } from '../bench/lib/runtime-flags.ts';
import { loadConfig } from '../src/config.ts';
import { freePort, until } from './support/net.ts';
import { startMongoDouble, type MongoDouble } from './support/mongo-double.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { familyOf, labelUses, metricNames, metricTypes, parseSamples } from './support/prometheus.ts';
import { post, realtimeSession } from './support/traffic.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEPLOY = join(ROOT, 'deploy');
const K8S = join(DEPLOY, 'k8s');
const GRAFANA = join(ROOT, 'grafana');
const DASHBOARD = join(GRAFANA, 'dashboards', 'openai-proxy.json');
const DATASOURCES = join(GRAFANA, 'provisioning', 'datasources', 'datasources.yaml');
const DASHBOARD_PROVIDERS = join(GRAFANA, 'provisioning', 'dashboards', 'dashboards.yaml');
const ALERTS = join(DEPLOY, 'prometheus', 'alerts.yml');
/**
 * The proxy under test runs with a policy file, so the policy's series (reloads, quota ratios) are
 * exposed: the institution header believed from loopback as without a policy, and a limit.
 */
const POLICY = `version: 1
institutionHeader:
  name: x-institution-id
  trustedFrom: [ 127.0.0.1, "::ffff:127.0.0.1" ]
institutions:
  law:
    limits: [ { window: month, costUsd: 1000 } ]
`;

const DEFAULTS = loadConfig({});
/** Variables read from the environment that are not the proxy's own (src/config.ts) nor OTEL_*. */
const STANDARD_ENV: Record<string, string> = {
  NODE_ENV: 'read by dependencies',
  NODE_OPTIONS: 'read by node itself (heap size)',
};
/** Labels Prometheus adds to every scraped series. */
const TARGET_LABELS = new Set(['job', 'instance']);
/** Series Prometheus makes up itself for every target. */
const PROMETHEUS_SERIES = new Set(['up', 'scrape_duration_seconds', 'scrape_samples_scraped']);

// ---------------------------------------------------------------- types of the files read

type Env = Record<string, string>;

interface DatasourceRef {
  type?: string;
  uid?: string;
}
interface DashboardTarget {
  refId: string;
  datasource?: DatasourceRef;
  expr?: string;
  exemplar?: boolean;
  instant?: boolean;
  query?: string;
}
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: DatasourceRef;
  targets?: DashboardTarget[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  datasource?: DatasourceRef;
}
interface Dashboard {
  uid?: string;
  title: string;
  panels: Panel[];
  templating: { list: Variable[] };
}
interface Datasource {
  name: string;
  type: string;
  uid: string;
  url: string;
  jsonData?: {
    timeInterval?: string;
    exemplarTraceIdDestinations?: { name: string; datasourceUid: string }[];
    tracesToMetrics?: { datasourceUid: string };
    serviceMap?: { datasourceUid: string };
  };
}
interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string | string[];
  environment?: Record<string, string> | string[];
  ports?: string[];
  volumes?: string[];
  stop_grace_period?: string;
}
interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}
interface ScrapeConfig {
  job_name: string;
  scrape_interval?: string;
  metrics_path?: string;
  static_configs: { targets: string[] }[];
}
interface TempoConfig {
  server: { http_listen_port: number };
  distributor: { receivers: { otlp: { protocols: { http: { endpoint: string } } } } };
  metrics_generator: { storage: { remote_write: { url: string; send_exemplars?: boolean }[] } };
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: unknown;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
interface Probe {
  httpGet?: { path: string; port: string | number };
}
interface Container {
  name: string;
  image: string;
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] }; sleep?: { seconds: number } } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean; runAsNonRoot?: boolean };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface StatefulSetSpec {
  serviceName: string;
  selector: { matchLabels: Record<string, string> };
  template: {
    metadata: { labels: Record<string, string>; annotations?: Record<string, string> };
    spec: {
      terminationGracePeriodSeconds?: number;
      securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; fsGroup?: number };
      containers: Container[];
      volumes?: { name: string }[];
    };
  };
  volumeClaimTemplates?: { metadata: { name: string } }[];
}
interface ServiceSpec {
  type?: string;
  clusterIP?: string;
  selector: Record<string, string>;
  ports: { name?: string; port: number; targetPort?: string | number }[];
}
interface HpaSpec {
  scaleTargetRef: { apiVersion: string; kind: string; name: string };
  minReplicas?: number;
  maxReplicas: number;
  metrics: { type: string; resource?: { name: string } }[];
}
interface PdbSpec {
  selector: { matchLabels: Record<string, string> };
}

// ---------------------------------------------------------------- readers

const read = (path: string): string => readFileSync(path, 'utf8');

function yamlFile<T>(path: string): T {
  const docs = parseAllDocuments(read(path));
  assert.ok(Array.isArray(docs), `${path}: no YAML document`);
  assert.equal(docs.length, 1, `${path}: expected one YAML document`);
  const [doc] = docs;
  assert.ok(doc !== undefined);
  assert.deepEqual(doc.errors, [], `${path}: ${doc.errors.map((e) => e.message).join('; ')}`);
  return doc.toJS() as T;
}

function k8sObjects(): Array<K8sObject & { file: string }> {
  const objects: Array<K8sObject & { file: string }> = [];
  for (const file of readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml')) {
    const docs = parseAllDocuments(read(join(K8S, file)));
    assert.ok(Array.isArray(docs), `${file}: no YAML document`);
    for (const doc of docs) {
      assert.deepEqual(doc.errors, [], `${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const value = doc.toJS() as K8sObject | null;
      if (value !== null) objects.push({ ...value, file });
    }
  }
  return objects;
}

function dashboard(): Dashboard {
  return JSON.parse(read(DASHBOARD)) as Dashboard;
}

/** Every panel, rows' nested panels included. */
function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

function promTargets(d: Dashboard): Array<{ panel: Panel; target: DashboardTarget; expr: string }> {
  return allPanels(d).flatMap((panel) =>
    (panel.targets ?? []).flatMap((target) => (target.expr === undefined ? [] : [{ panel, target, expr: target.expr }])),
  );
}

function variableQuery(v: Variable): string {
  return typeof v.query === 'string' ? v.query : v.query.query;
}

/** The Dockerfile as [instruction, arguments] with continuation lines joined and comments dropped. */
function dockerInstructions(): Array<[string, string]> {
  const lines = read(join(DEPLOY, 'Dockerfile'))
    .split('\n')
    .filter((line) => !/^\s*#/.test(line));
  const joined = lines.join('\n').replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const match = /^(\S+)\s+(.*)$/.exec(line);
      assert.ok(match !== null, `Dockerfile: cannot read "${line}"`);
      return [(match[1] as string).toUpperCase(), match[2] as string];
    });
}

function dockerEnv(instructions: Array<[string, string]>): Env {
  const env: Env = {};
  for (const [, args] of instructions.filter(([i]) => i === 'ENV')) {
    for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) env[m[1] as string] = (m[2] as string).replace(/^"|"$/g, '');
  }
  return env;
}

/** The JSON (exec) form of CMD / HEALTHCHECK CMD. */
function execForm(args: string): string[] {
  const json = args.slice(args.indexOf('['));
  const parsed: unknown = JSON.parse(json);
  assert.ok(Array.isArray(parsed) && parsed.every((a): a is string => typeof a === 'string'), `not an exec-form array: ${args}`);
  return parsed;
}

/** .dockerignore semantics: patterns in order, last match wins, a match on a parent covers its children. */
function dockerIgnored(path: string, patterns: string[]): boolean {
  const toRegExp = (pattern: string): RegExp => {
    let source = '';
    for (let i = 0; i < pattern.length; i++) {
      const c = pattern[i] as string;
      if (pattern.startsWith('**/', i)) {
        source += '(?:.*/)?';
        i += 2;
      } else if (pattern.startsWith('**', i)) {
        source += '.*';
        i += 1;
      } else if (c === '*') source += '[^/]*';
      else if (c === '?') source += '[^/]';
      else source += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
    return new RegExp(`^${source}$`);
  };
  const prefixes = path.split('/').map((_, i, parts) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const line of patterns) {
    const negated = line.startsWith('!');
    const pattern = (negated ? line.slice(1) : line).replace(/^\/+|\/+$/g, '');
    const re = toRegExp(pattern);
    if (prefixes.some((p) => re.test(p))) ignored = !negated;
  }
  return ignored;
}

/** The names of the variables src/config.ts reads, found by letting it read a recording environment. */
function configVariables(): Set<string> {
  const names = new Set<string>();
  const env = new Proxy<Record<string, string | undefined>>(
    {},
    {
      get: (_target, key) => {
        if (typeof key === 'string') names.add(key);
        return undefined;
      },
    },
  );
  loadConfig(env);
  return names;
}

function assertKnownVariables(names: Iterable<string>, where: string): void {
  const known = configVariables();
  for (const name of names) {
    const ok = known.has(name) || name.startsWith('OTEL_') || name in STANDARD_ENV;
    assert.ok(ok, `${where}: ${name} is not read by src/config.ts (nor a standard OTEL_* or Node variable)`);
  }
}

/** Compose's ${VAR:-default} and ${VAR-default}, resolved to their defaults. */
function composeDefaults(value: string): string {
  return value.replace(/\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}/g, '$1');
}

function composeEnv(service: ComposeService): Env {
  const env = service.environment ?? {};
  const entries = Array.isArray(env) ? env.map((e) => e.split(/=(.*)/s).slice(0, 2) as [string, string]) : Object.entries(env);
  return Object.fromEntries(entries.map(([k, v]) => [k, composeDefaults(String(v))]));
}

/** Container port of a compose port mapping ("127.0.0.1:8000:8000", "8000:8000", "8000"). */
function containerPort(mapping: string): number {
  return Number(mapping.split(':').at(-1)?.split('/')[0]);
}

function durationSeconds(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(value.trim());
  assert.ok(match !== null, `not a duration: ${value}`);
  const factor = { ms: 0.001, s: 1, m: 60, h: 3600 }[match[2] as 'ms' | 's' | 'm' | 'h'];
  return Number(match[1]) * factor;
}

// ---------------------------------------------------------------- the exposition

interface Exposition {
  /** Family name (as in # TYPE) -> type. */
  types: Map<string, string>;
  /** Sample name -> label names seen on it. */
  samples: Map<string, Set<string>>;
}

function parseExposition(text: string): Exposition {
  const samples = new Map<string, Set<string>>();
  for (const s of parseSamples(text)) {
    const labels = samples.get(s.name) ?? new Set<string>();
    for (const l of Object.keys(s.labels)) labels.add(l);
    samples.set(s.name, labels);
  }
  return { types: metricTypes(text), samples };
}

// ---------------------------------------------------------------- traffic



/** One of every kind of exchange the dashboard charts; resolves once all are recorded. */
async function driveTraffic(proxy: TestProxy): Promise<void> {
  const before = proxy.runtime.journal?.stats.appended ?? 0;
  const chat = { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] };
  const statuses = await Promise.all([
    post(proxy, '/v1/chat/completions', chat, { 'x-institution-id': 'law' }),
    post(proxy, '/v1/chat/completions', { ...chat, stream: true, stream_options: { include_usage: true } }, { 'x-institution-id': 'medicine' }),
    post(proxy, '/v1/embeddings', { model: 'text-embedding-3-small', input: 'a' }),
    post(proxy, '/v1/chat/completions', chat, { 'x-test-status': '429' }),
    post(proxy, '/v1/chat/completions', chat, { 'x-test-reset': 'before-headers' }),
    realtimeSession(proxy),
  ]);
  assert.deepEqual(statuses, [200, 200, 200, 429, 502, 101]);
  await until(() => (proxy.runtime.journal?.stats.appended ?? 0) >= before + statuses.length, 10_000, 'audit records of the traffic');
}

// ---------------------------------------------------------------- tests

describe('Grafana provisioning and dashboard', () => {
  test('data sources: Prometheus and Tempo with fixed uids, exemplars linking to Tempo', () => {
    const file = yamlFile<{ apiVersion: number; datasources: Datasource[] }>(DATASOURCES);
    assert.equal(file.apiVersion, 1);
    const byUid = new Map(file.datasources.map((d) => [d.uid, d]));
    const prometheus = byUid.get('prometheus');
    const tempo = byUid.get('tempo');
    assert.equal(prometheus?.type, 'prometheus');
    assert.equal(tempo?.type, 'tempo');
    assert.deepEqual(prometheus.jsonData?.exemplarTraceIdDestinations, [{ name: 'trace_id', datasourceUid: 'tempo' }]);
    assert.equal(tempo.jsonData?.tracesToMetrics?.datasourceUid, 'prometheus');
    assert.equal(tempo.jsonData?.serviceMap?.datasourceUid, 'prometheus');
  });

  test('dashboard provider loads /var/lib/grafana/dashboards from files', () => {
    const file = yamlFile<{ apiVersion: number; providers: { type: string; options: { path: string } }[] }>(DASHBOARD_PROVIDERS);
    assert.equal(file.apiVersion, 1);
    assert.deepEqual(
      file.providers.map((p) => [p.type, p.options.path]),
      [['file', '/var/lib/grafana/dashboards']],
    );
  });

  test('dashboard: fixed uid, unique panel ids, every data source provisioned', () => {
    const d = dashboard();
    assert.equal(d.uid, 'openai-proxy');
    const ids = allPanels(d).map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const uids = new Set(yamlFile<{ datasources: Datasource[] }>(DATASOURCES).datasources.map((ds) => ds.uid));
    for (const panel of allPanels(d)) {
      if (panel.type === 'row') continue;
      assert.ok(panel.datasource?.uid !== undefined && uids.has(panel.datasource.uid), `panel "${panel.title}": data source ${panel.datasource?.uid}`);
      assert.ok((panel.targets ?? []).length > 0, `panel "${panel.title}" has queries`);
      for (const target of panel.targets ?? []) {
        assert.ok(target.datasource?.uid !== undefined && uids.has(target.datasource.uid), `panel "${panel.title}" ${target.refId}: data source ${target.datasource?.uid}`);
      }
    }
    for (const v of d.templating.list) assert.ok(v.datasource?.uid !== undefined && uids.has(v.datasource.uid), `variable ${v.name}`);
  });

  test('template variables operation, model and institution come from label_values', () => {
    const vars = new Map(dashboard().templating.list.map((v) => [v.name, variableQuery(v)]));
    for (const name of ['operation', 'model', 'institution']) {
      assert.match(vars.get(name) ?? '', new RegExp(`^label_values\\(.+,\\s*${name}\\)$`), `variable ${name}`);
    }
  });

  test('queries use $__rate_interval, filter by every variable with =~, and latency panels carry exemplars', () => {
    const d = dashboard();
    const names = d.templating.list.map((v) => v.name);
    for (const { panel, target, expr } of promTargets(d)) {
      const where = `"${panel.title}" ${target.refId}`;
      const unquoted = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
      for (const m of unquoted.matchAll(/\b(rate|irate|increase)\([^[]*\[([^\]]+)\]/g)) {
        const allowed = m[1] === 'increase' && target.instant === true ? ['$__rate_interval', '$__range'] : ['$__rate_interval'];
        assert.ok(allowed.includes(m[2] as string), `${where}: ${m[1]}(...[${m[2]}])`);
      }
      for (const name of names) {
        assert.doesNotMatch(expr, new RegExp(`[^~!]="\\$${name}"`), `${where}: $${name} needs =~ (multi-value)`);
      }
      const latency = /openai_proxy_(request_duration|upstream_ttfb)_seconds_bucket/.test(expr);
      if (latency && panel.type === 'timeseries') assert.equal(target.exemplar, true, `${where}: exemplars on a latency panel`);
    }
  });

  test('the Tempo panel queries the service name the proxy and the deployments use', () => {
    const tempoQueries = allPanels(dashboard()).flatMap((p) => (p.targets ?? []).flatMap((t) => (t.datasource?.uid === 'tempo' && t.query !== undefined ? [t.query] : [])));
    assert.ok(tempoQueries.length > 0);
    const compose = yamlFile<Compose>(join(DEPLOY, 'docker-compose.yml'));
    const configMap = k8sObjects().find((o) => o.kind === 'ConfigMap');
    for (const name of [composeEnv(compose.services.proxy as ComposeService).OTEL_SERVICE_NAME, configMap?.data?.OTEL_SERVICE_NAME, 'openai-api-proxy']) {
      for (const query of tempoQueries) assert.ok(query.includes(`resource.service.name = "${name}"`), `${query} vs ${name}`);
    }
  });
});

describe('every metric and label on the dashboard exists on a running proxy', () => {
  let upstream: Upstream;
  let mongo: MongoDouble;
  let proxy: TestProxy;
  let workDir: string;
  let exposition: Exposition;

  before(async () => {
    upstream = await startUpstream();
    // With MongoDB configured, so the shipper's series exist too.
    mongo = await startMongoDouble();
    workDir = mkdtempSync(join(tmpdir(), 'deploy-'));
    const policyFile = join(workDir, 'policy', 'policy.yaml');
    mkdirSync(dirname(policyFile));
    writeFileSync(policyFile, POLICY);
    proxy = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      METRICS_ENABLED: 'true',
      AUDIT_ENABLED: 'true',
      AUDIT_DIR: join(workDir, 'audit'),
      MONGODB_URI: mongo.uri,
      POLICY_FILE: policyFile,
    });
    await driveTraffic(proxy);
    const res = await request(`${proxy.adminUrl}/metrics`);
    exposition = parseExposition(await res.body.text());
  });

  after(async () => {
    await proxy.close();
    await upstream.close();
    await mongo.stop({ wipe: true });
    rmSync(workDir, { recursive: true, force: true });
  });

  test('metric names of the dashboard and the alerts (histogram _bucket/_sum/_count map to their family)', () => {
    const missing: string[] = [];
    const alerts = yamlFile<{ groups: { rules: { expr: string }[] }[] }>(ALERTS).groups.flatMap((g) => g.rules.map((r) => r.expr));
    const exprs = [...promTargets(dashboard()).map((t) => t.expr), ...dashboard().templating.list.map(variableQuery), ...alerts];
    for (const expr of exprs) {
      for (const name of metricNames(expr.replace(/^label_values\((.*),\s*\w+\)$/, '$1'))) {
        if (!PROMETHEUS_SERIES.has(name) && familyOf(name, exposition.types) === undefined) missing.push(`${name} (in ${expr})`);
      }
    }
    assert.deepEqual(missing, []);
  });

  test('label names in selectors and grouping clauses', (t) => {
    const problems: string[] = [];
    const unchecked = new Set<string>();
    const labelsOf = (name: string): Set<string> | undefined => exposition.samples.get(name) ?? exposition.samples.get(`${name}_count`);
    for (const { panel, expr } of promTargets(dashboard())) {
      const { selectors, grouping } = labelUses(expr);
      const inExpr = new Set<string>(TARGET_LABELS);
      for (const name of metricNames(expr)) for (const l of labelsOf(name) ?? []) inExpr.add(l);
      for (const { metric, labels } of selectors) {
        const known = metric === null ? undefined : labelsOf(metric);
        if (known === undefined) continue; // no samples to compare with; the name itself is checked above
        for (const label of labels) if (!known.has(label) && !TARGET_LABELS.has(label)) problems.push(`"${panel.title}": ${metric} has no label ${label}`);
      }
      // A metric without samples yet (no GC so far, no observer failure) cannot tell its labels.
      const silent = metricNames(expr).filter((n) => !PROMETHEUS_SERIES.has(n) && labelsOf(n) === undefined);
      silent.forEach((n) => unchecked.add(n));
      if (silent.length > 0) continue;
      for (const label of grouping) if (!inExpr.has(label)) problems.push(`"${panel.title}": no metric in "${expr}" has label ${label}`);
    }
    if (unchecked.size > 0) t.diagnostic(`labels not checked (no samples yet): ${[...unchecked].join(', ')}`);
    assert.deepEqual(problems, []);
  });

  test('the variables list label values that occur', () => {
    for (const v of dashboard().templating.list) {
      const label = /,\s*(\w+)\)$/.exec(variableQuery(v))?.[1];
      if (label === undefined || TARGET_LABELS.has(label)) continue;
      assert.ok(
        [...exposition.samples.values()].some((labels) => labels.has(label)),
        `variable ${v.name}: no series has label ${label}`,
      );
    }
  });
});

describe('Dockerfile', () => {
  const instructions = dockerInstructions();
  const of = (name: string): string[] => instructions.filter(([i]) => i === name).map(([, args]) => args);

  test('multi-stage: npm ci, then a slim Node 20 runtime with production dependencies', () => {
    const args = Object.fromEntries(of('ARG').map((a) => a.split('=') as [string, string]));
    const bases = of('FROM').map((f) => (f.split(/\s+/)[0] as string).replace(/\$\{(\w+)\}/g, (_, n: string) => args[n] ?? ''));
    assert.ok(bases.length >= 2, 'at least two stages');
    assert.match(bases.at(-1) ?? '', /^node:20(\.[\d.]+)?-(bookworm-slim|alpine[\d.]*)$/);
    assert.ok(of('RUN').some((r) => /\bnpm ci\b.*--omit=dev/.test(r)), 'npm ci --omit=dev');
    const pkg = JSON.parse(read(join(ROOT, 'package.json'))) as { dependencies: Record<string, string>; scripts: Record<string, string> };
    assert.ok(!('tsx' in pkg.dependencies), 'tsx is a dev dependency: production runs the compiled dist/');
    assert.ok(of('RUN').some((r) => /\bnpm ci\b/.test(r) && !/--omit=dev/.test(r)), 'a build stage installs the compiler and compiles (npm ci runs prepare)');
    assert.equal(pkg.scripts.prepare, 'npm run build', 'npm install compiles');
    const runtime = instructions.slice(instructions.map(([i]) => i).lastIndexOf('FROM'));
    const shipped = runtime.filter(([i]) => i === 'COPY').map(([, args]) => args);
    assert.ok(shipped.some((c) => /--from=build\s+\/app\/dist\s/.test(c)), 'the runtime stage takes dist/ from the build stage');
    assert.ok(!shipped.some((c) => /(^|\s)(\.\/)?src\b/.test(c)), 'the runtime stage ships no TypeScript sources');
  });

  test('COPY sources exist and the build context filter lets them through', () => {
    const ignore = read(join(DEPLOY, 'Dockerfile.dockerignore'))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    for (const args of of('COPY')) {
      const words = args.split(/\s+/);
      if (words.some((w) => w.startsWith('--from='))) continue;
      const sources = words.filter((w) => !w.startsWith('--')).slice(0, -1);
      for (const source of sources) {
        assert.ok(existsSync(join(ROOT, source)), `COPY ${source}: missing`);
        assert.ok(!dockerIgnored(source.replace(/\/$/, ''), ignore), `COPY ${source}: excluded by Dockerfile.dockerignore`);
      }
    }
    assert.ok(!dockerIgnored('src/main.ts', ignore));
    for (const excluded of ['node_modules', 'dist/main.js', '.git', 'data/audit/audit-1.ndjson', 'test/deploy.test.ts', 'src/.env']) {
      assert.ok(dockerIgnored(excluded, ignore), `${excluded} stays out of the build context`);
    }
  });

  test('non-root, listens on all interfaces, journal on a volume, ports as in the code', () => {
    const user = of('USER').at(-1) ?? 'root';
    assert.ok(!/^(root|0)(:|$)/.test(user), `USER ${user}`);
    const env = dockerEnv(instructions);
    assert.equal(env.HOST, '0.0.0.0');
    assert.equal(env.ADMIN_HOST, '0.0.0.0');
    assert.equal(env.AUDIT_DIR, '/data/audit');
    assert.ok(of('VOLUME').some((v) => v.includes('/data/audit')), 'VOLUME /data/audit');
    assertKnownVariables(Object.keys(env), 'Dockerfile ENV');
    const exposed = of('EXPOSE').flatMap((e) => e.split(/\s+/).map((p) => Number(p.split('/')[0])));
    assert.deepEqual(exposed.sort(), [DEFAULTS.port, DEFAULTS.adminPort].sort());
    if (env.PORT !== undefined) assert.equal(Number(env.PORT), DEFAULTS.port);
    if (env.ADMIN_PORT !== undefined) assert.equal(Number(env.ADMIN_PORT), DEFAULTS.adminPort);
  });

  test('CMD starts the proxy, HEALTHCHECK passes against it, SIGTERM ends it with exit 0', async () => {
    const cmd = execForm(of('CMD').at(-1) ?? '');
    const health = execForm(of('HEALTHCHECK').at(-1) ?? '');
    assert.equal(cmd[0], 'node');
    assert.ok(existsSync(join(ROOT, cmd.at(-1) ?? '')), `CMD runs ${cmd.at(-1)}`);
    const pkg = JSON.parse(read(join(ROOT, 'package.json'))) as { scripts: Record<string, string> };
    assert.deepEqual(cmd, pkg.scripts.start?.split(' '), 'CMD runs the proxy as npm start does, with the same runtime flags');
    assert.equal(cmd.at(-1), 'dist/main.js', 'production runs the compiled build, not TypeScript through a loader');
    assert.deepEqual(RUNTIME_FLAGS, cmd.slice(1, -1), 'npm run bench starts its servers with these flags too');
    assert.equal(health[0], 'node', 'the health check needs nothing but node (no curl in slim images)');
    assert.ok(health.join(' ').includes('/healthz'));

    const upstream = await startUpstream();
    const auditDir = mkdtempSync(join(tmpdir(), 'deploy-cmd-'));
    const port = await freePort();
    let adminPort = await freePort();
    while (adminPort === port) adminPort = await freePort();
    const env: NodeJS.ProcessEnv = { ...process.env, ...dockerEnv(instructions) };
    delete env.OTEL_EXPORTER_OTLP_ENDPOINT;
    delete env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
    Object.assign(env, { HOST: '127.0.0.1', ADMIN_HOST: '127.0.0.1', PORT: String(port), ADMIN_PORT: String(adminPort), AUDIT_DIR: auditDir, UPSTREAM_URL: upstream.url });
    const healthcheck = (admin: number): Promise<number> =>
      new Promise((resolve) => {
        execFile(process.execPath, health.slice(1), { env: { ...env, ADMIN_PORT: String(admin) }, timeout: 10_000 }, (err) => {
          resolve(err === null ? 0 : typeof err.code === 'number' ? err.code : 1);
        });
      });
    const child = spawn(process.execPath, cmd.slice(1), { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer): void => void (output += chunk.toString('utf8'));
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const exited = once(child, 'exit');
    try {
      const healthy = async (): Promise<boolean> => {
        if (child.exitCode !== null) throw new Error(`the proxy exited with ${child.exitCode}`);
        return (await healthcheck(adminPort)) === 0;
      };
      await until(healthy, 20_000, 'HEALTHCHECK to pass').catch((err: unknown) => {
        throw new Error(`${String(err)}; exit code ${child.exitCode}; proxy output: ${output}`);
      });
      assert.notEqual(await healthcheck(await freePort()), 0, 'the health check fails when nothing answers');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const [code] = (await exited) as [number | null];
      clearTimeout(timer);
      assert.equal(code, 0, `exit after SIGTERM (output: ${output})`);
    } finally {
      child.kill('SIGKILL');
      await upstream.close();
      rmSync(auditDir, { recursive: true, force: true });
    }
  });
});

describe('docker compose stack', () => {
  const compose = yamlFile<Compose>(join(DEPLOY, 'docker-compose.yml'));
  const services = compose.services;
  const proxy = services.proxy as ComposeService;

  test('services and images', () => {
    assert.deepEqual(Object.keys(services).sort(), ['grafana', 'mongo', 'prometheus', 'proxy', 'tempo']);
    assert.equal(services.mongo?.image, 'mongo:8');
    assert.equal(services.tempo?.image, 'grafana/tempo:3.0.0');
    assert.equal(services.grafana?.image, 'grafana/grafana:13.1.3');
    assert.ok(proxy.build !== undefined, 'the proxy is built from the repository');
    assert.ok(existsSync(join(DEPLOY, proxy.build.context, proxy.build.dockerfile)), 'build context + dockerfile');
    assert.equal(resolve(DEPLOY, proxy.build.context, proxy.build.dockerfile), join(DEPLOY, 'Dockerfile'));
  });

  test('every bind mount exists and every named volume is declared', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0] as string;
        if (source.startsWith('.') || source.startsWith('/')) assert.ok(existsSync(resolve(DEPLOY, source)), `${name}: ${source} does not exist`);
        else assert.ok(compose.volumes !== undefined && source in compose.volumes, `${name}: volume ${source} is not declared`);
      }
    }
  });

  test('proxy: environment the code reads, valid values, the journal on a volume, ports as in the code', () => {
    const env = composeEnv(proxy);
    assertKnownVariables(Object.keys(env), 'compose proxy environment');
    const config = loadConfig(env);
    assert.equal(config.upstreamUrl.href, DEFAULTS.upstreamUrl.href, 'UPSTREAM_URL defaults to the code default');
    assert.equal(env.MONGODB_URI, 'mongodb://mongo:27017/openai_proxy');
    assert.equal(env.OTEL_EXPORTER_OTLP_ENDPOINT, 'http://tempo:4318');
    assert.ok(proxy.volumes?.some((v) => v.split(':')[1] === config.audit.dir), `a volume at AUDIT_DIR (${config.audit.dir})`);
    assert.deepEqual((proxy.ports ?? []).map(containerPort).sort(), [DEFAULTS.port, DEFAULTS.adminPort].sort());
    assert.ok(durationSeconds(proxy.stop_grace_period ?? '10s') > config.shutdownGraceMs / 1000, 'stop_grace_period > SHUTDOWN_GRACE_MS');
  });

  test('hosts named in URLs are compose services, on the ports those services listen on', () => {
    const tempo = yamlFile<TempoConfig>(join(DEPLOY, 'tempo.yaml'));
    const otlp = new URL(composeEnv(proxy).OTEL_EXPORTER_OTLP_ENDPOINT ?? '');
    assert.ok(otlp.hostname in services);
    assert.equal(Number(otlp.port), Number(tempo.distributor.receivers.otlp.protocols.http.endpoint.split(':').at(-1)));
    assert.match(tempo.distributor.receivers.otlp.protocols.http.endpoint, /^0\.0\.0\.0:/, 'Tempo listens beyond localhost');
    const mongo = new URL(composeEnv(proxy).MONGODB_URI ?? '');
    assert.ok(mongo.hostname in services);
    for (const { url, send_exemplars } of tempo.metrics_generator.storage.remote_write) {
      const u = new URL(url);
      assert.ok(u.hostname in services, url);
      assert.equal(u.pathname, '/api/v1/write');
      assert.equal(send_exemplars, true);
    }
    const datasources = yamlFile<{ datasources: Datasource[] }>(DATASOURCES).datasources;
    for (const ds of datasources) assert.ok(new URL(ds.url).hostname in services, `${ds.name}: ${ds.url}`);
    const tempoDs = datasources.find((ds) => ds.uid === 'tempo');
    assert.equal(Number(new URL(tempoDs?.url ?? '').port), tempo.server.http_listen_port);
  });

  test('prometheus: exemplar storage, remote-write receiver, scrapes proxy:9464 every 5 s', () => {
    const command = [services.prometheus?.command ?? []].flat().join(' ');
    assert.match(command, /--enable-feature=exemplar-storage/);
    assert.match(command, /--web\.enable-remote-write-receiver/);
    const configPath = /--config\.file=(\S+)/.exec(command)?.[1];
    const mount = services.prometheus?.volumes?.find((v) => v.split(':')[1] === configPath);
    assert.equal(mount?.split(':')[0], './prometheus.yml', 'the config file mounted is deploy/prometheus.yml');
    const config = yamlFile<{ scrape_configs: ScrapeConfig[] }>(join(DEPLOY, 'prometheus.yml'));
    const job = config.scrape_configs.find((j) => j.static_configs.some((s) => s.targets.some((t) => t.startsWith('proxy:'))));
    assert.ok(job !== undefined, 'a job scrapes the proxy');
    assert.deepEqual(job.static_configs.flatMap((s) => s.targets), [`proxy:${DEFAULTS.adminPort}`]);
    assert.equal(job.scrape_interval, '5s');
    assert.equal(job.metrics_path ?? '/metrics', '/metrics');
    const timeInterval = yamlFile<{ datasources: Datasource[] }>(DATASOURCES).datasources.find((d) => d.uid === 'prometheus')?.jsonData?.timeInterval;
    assert.equal(timeInterval, job.scrape_interval, 'Grafana knows the scrape interval ($__rate_interval)');
  });

  test('grafana: provisioning and dashboards mounted where Grafana and the provider look', () => {
    const mounts = new Map((services.grafana?.volumes ?? []).map((v) => [v.split(':')[1], v.split(':')[0]]));
    assert.equal(mounts.get('/etc/grafana/provisioning/datasources'), '../grafana/provisioning/datasources');
    assert.equal(mounts.get('/etc/grafana/provisioning/dashboards'), '../grafana/provisioning/dashboards');
    assert.equal(mounts.get('/var/lib/grafana/dashboards'), '../grafana/dashboards');
  });
});

describe('Kubernetes manifests', () => {
  const objects = k8sObjects();
  const one = <T>(kind: string, predicate: (o: K8sObject) => boolean = () => true): K8sObject & { spec: T } => {
    const found = objects.filter((o) => o.kind === kind && predicate(o));
    assert.equal(found.length, 1, `exactly one ${kind}`);
    return found[0] as K8sObject & { spec: T };
  };
  const sts = one<StatefulSetSpec>('StatefulSet');
  const pod = sts.spec.template;
  const container = pod.spec.containers[0] as Container;
  const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']));
  const portOf = (port: string | number | undefined): number | undefined =>
    typeof port === 'number' ? port : container.ports?.find((p) => p.name === port)?.containerPort;
  const matches = (selector: Record<string, string>): boolean => Object.entries(selector).every(([k, v]) => pod.metadata.labels[k] === v);

  test('every document parses, has a kind and a name, and kustomization lists every file', () => {
    for (const o of objects) assert.ok(o.apiVersion && o.kind && o.metadata.name, `${o.file}: apiVersion, kind, metadata.name`);
    const kustomization = yamlFile<{ resources: string[] }>(join(K8S, 'kustomization.yaml'));
    const files = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
    assert.deepEqual([...kustomization.resources].sort(), files.sort());
  });

  test('StatefulSet: one journal volume per replica at AUDIT_DIR, headless governing Service', () => {
    assert.equal(env.AUDIT_DIR, '/data/audit');
    assert.equal(env.HOST, '0.0.0.0');
    assert.equal(env.ADMIN_HOST, '0.0.0.0');
    const claim = container.volumeMounts?.find((m) => m.mountPath === env.AUDIT_DIR)?.name;
    assert.ok(claim !== undefined && sts.spec.volumeClaimTemplates?.some((t) => t.metadata.name === claim), 'AUDIT_DIR is a volumeClaimTemplate');
    const headless = one<ServiceSpec>('Service', (o) => (o.spec as ServiceSpec).clusterIP === 'None');
    assert.equal(sts.spec.serviceName, headless.metadata.name);
    assert.ok(matches(headless.spec.selector));
    assert.ok(matches(sts.spec.selector.matchLabels));
  });

  test('environment: only variables the code reads, with values it accepts', () => {
    const names = new Set(Object.keys(env));
    const merged: Env = {};
    for (const from of container.envFrom ?? []) {
      const ref = from.configMapRef?.name ?? from.secretRef?.name;
      const kind = from.configMapRef !== undefined ? 'ConfigMap' : 'Secret';
      const source = one(kind, (o) => o.metadata.name === ref);
      Object.assign(merged, source.data ?? {}, source.stringData ?? {});
    }
    for (const name of Object.keys(merged)) names.add(name);
    assertKnownVariables(names, 'StatefulSet environment');
    const config = loadConfig({ ...merged, ...env });
    assert.equal(config.port, DEFAULTS.port);
    assert.equal(config.adminPort, DEFAULTS.adminPort);
    assert.match(merged.MONGODB_URI ?? '', /^mongodb:\/\/.+replicaSet=/, 'the Secret carries a replica-set MONGODB_URI');
  });

  test('ports, probes on the admin port, grace period longer than the drain', () => {
    assert.equal(portOf('http'), DEFAULTS.port);
    assert.equal(portOf('admin'), DEFAULTS.adminPort);
    assert.equal(Number(env.PORT ?? DEFAULTS.port), portOf('http'));
    assert.equal(Number(env.ADMIN_PORT ?? DEFAULTS.adminPort), portOf('admin'));
    assert.equal(container.livenessProbe?.httpGet?.path, '/healthz');
    assert.equal(portOf(container.livenessProbe?.httpGet?.port), DEFAULTS.adminPort);
    assert.equal(container.readinessProbe?.httpGet?.path, '/readyz');
    assert.equal(portOf(container.readinessProbe?.httpGet?.port), DEFAULTS.adminPort);
    if (container.startupProbe !== undefined) {
      assert.equal(container.startupProbe.httpGet?.path, '/healthz');
      assert.equal(portOf(container.startupProbe.httpGet?.port), DEFAULTS.adminPort);
    }
    const drainSeconds = Number(env.SHUTDOWN_GRACE_MS ?? DEFAULTS.shutdownGraceMs) / 1000;
    const preStop = container.lifecycle?.preStop;
    const pauseSeconds = preStop?.sleep?.seconds ?? (preStop?.exec?.command[0] === 'sleep' ? Number(preStop.exec.command[1]) : 0);
    const grace = pod.spec.terminationGracePeriodSeconds ?? 30;
    assert.ok(grace > drainSeconds + pauseSeconds, `terminationGracePeriodSeconds ${grace} > SHUTDOWN_GRACE_MS ${drainSeconds} s + preStop ${pauseSeconds} s`);
  });

  test('Prometheus scrape annotations point at /metrics on the admin port', () => {
    const annotations = pod.metadata.annotations ?? {};
    assert.equal(annotations['prometheus.io/scrape'], 'true');
    assert.equal(Number(annotations['prometheus.io/port']), DEFAULTS.adminPort);
    assert.equal(annotations['prometheus.io/path'], '/metrics');
  });

  test('non-root, read-only root filesystem, every written path a volume, resources set', () => {
    assert.equal(pod.spec.securityContext?.runAsNonRoot, true);
    assert.notEqual(pod.spec.securityContext?.runAsUser, 0);
    assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
    assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
    const mounts = new Set((container.volumeMounts ?? []).map((m) => m.mountPath));
    for (const path of [env.AUDIT_DIR, '/tmp']) assert.ok(mounts.has(path ?? ''), `${path} is writable (a volume)`);
    assert.ok(container.resources?.requests?.cpu !== undefined && container.resources.requests.memory !== undefined, 'CPU and memory requests');
    assert.ok(container.resources.limits?.memory !== undefined, 'a memory limit');
  });

  test('Services, autoscaler and disruption budget select the proxy pods', () => {
    const service = one<ServiceSpec>('Service', (o) => (o.spec as ServiceSpec).clusterIP !== 'None');
    assert.equal(service.spec.type ?? 'ClusterIP', 'ClusterIP');
    assert.ok(matches(service.spec.selector));
    assert.deepEqual(
      service.spec.ports.map((p) => [p.port, portOf(p.targetPort ?? p.port)]),
      [[DEFAULTS.port, DEFAULTS.port]],
    );
    const hpa = one<HpaSpec>('HorizontalPodAutoscaler');
    assert.deepEqual([hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name], ['StatefulSet', sts.metadata.name]);
    assert.ok(hpa.spec.metrics.some((m) => m.type === 'Resource' && m.resource?.name === 'cpu'));
    assert.ok((hpa.spec.minReplicas ?? 1) >= 2 && hpa.spec.maxReplicas >= (hpa.spec.minReplicas ?? 1));
    assert.ok(matches(one<PdbSpec>('PodDisruptionBudget').spec.selector.matchLabels));
  });
});
