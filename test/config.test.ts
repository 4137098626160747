/** Configuration: defaults, parsing, and one clear line per bad value. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { ConfigError, loadConfig } from '../src/config.ts';

test('defaults match the README', () => {
  const c = loadConfig({});
  assert.equal(c.host, '127.0.0.1');
  assert.equal(c.port, 8000);
  assert.equal(c.adminPort, 9464);
  assert.equal(c.upstreamUrl.href, 'https://api.openai.com/');
  assert.equal(c.upstreamTimeoutMs, 600_000);
  assert.equal(c.upstreamMaxConnections, null);
  assert.equal(c.forwardedHeaders, false);
  assert.equal(c.memoryBudgetBytes, 64 * 1024 * 1024);
  assert.equal(c.tls, null);
  assert.deepEqual(c.routes, []);
  assert.equal(c.audit.enabled, true);
  assert.equal(c.audit.dir, './data/audit');
  assert.equal(c.audit.maxBodyBytes, 1024 * 1024);
  assert.equal(c.audit.segmentBytes, 64 * 1024 * 1024);
  assert.equal(c.audit.fsync, 'interval');
  assert.equal(c.audit.streamUsage, 'passthrough');
  assert.equal(c.audit.institutionHeader, 'x-institution-id');
  assert.equal(c.audit.mongodbUri, null);
  assert.equal(c.audit.mongodbDb, 'openai_proxy');
  assert.equal(c.audit.quotaStoreTimeoutMs, 200);
});

test('routes parse and keep their origins', () => {
  const c = loadConfig({ UPSTREAM_ROUTES: '{"/backend-api/":"https://chatgpt.example","/v1/audio/":"http://10.0.0.1:8080"}' });
  assert.deepEqual(c.routes, [
    { prefix: '/backend-api/', origin: 'https://chatgpt.example' },
    { prefix: '/v1/audio/', origin: 'http://10.0.0.1:8080' },
  ]);
});

const bad: Array<[Record<string, string>, RegExp]> = [
  [{ PORT: '70000' }, /^PORT: 70000 is out of range/],
  [{ PORT: 'eighty' }, /^PORT: expected a whole number/],
  [{ ADMIN_PORT: '-1' }, /^ADMIN_PORT: expected a whole number/],
  [{ UPSTREAM_URL: 'api.openai.com' }, /^UPSTREAM_URL: "api.openai.com" is not an absolute URL/],
  [{ UPSTREAM_URL: 'ftp://x' }, /^UPSTREAM_URL: .* must use http:\/\/ or https:\/\//],
  [{ UPSTREAM_ROUTES: '{"/a":' }, /^UPSTREAM_ROUTES: malformed JSON/],
  [{ UPSTREAM_ROUTES: '["x"]' }, /^UPSTREAM_ROUTES: expected a JSON object/],
  [{ UPSTREAM_ROUTES: '{"a/":"http://x"}' }, /^UPSTREAM_ROUTES: prefix "a\/" must start with \//],
  [{ UPSTREAM_TIMEOUT_MS: '0' }, /^UPSTREAM_TIMEOUT_MS: 0 is out of range/],
  [{ QUOTA_STORE_TIMEOUT_MS: '5' }, /^QUOTA_STORE_TIMEOUT_MS: 5 is out of range/],
  [{ TLS_CERT_FILE: '/nonexistent.pem' }, /^TLS_KEY_FILE: is required/],
  [{ TLS_CERT_FILE: '/nonexistent.pem', TLS_KEY_FILE: '/nonexistent.key' }, /^TLS_CERT_FILE: cannot read/],
  [{ FORWARDED_HEADERS: 'maybe' }, /^FORWARDED_HEADERS: expected true or false/],
  [{ AUDIT_FSYNC: 'sometimes' }, /^AUDIT_FSYNC: expected one of always, interval, never/],
  [{ STREAM_USAGE: 'always' }, /^STREAM_USAGE: expected one of passthrough, inject/],
  [{ HTTPS_PROXY: 'proxy:3128' }, /^HTTPS_PROXY: /],
  [{ MEMORY_BUDGET_BYTES: '65536' }, /^MEMORY_BUDGET_BYTES: 65536 is out of range/],
  // MONGODB_URI's form is checked at start, not when the shipper first connects.
  [{ MONGODB_URI: 'mongo:27017' }, /^MONGODB_URI: expected mongodb:\/\/host/],
  [{ MONGODB_URI: 'http://mongo:27017' }, /^MONGODB_URI: expected mongodb:\/\/host/],
  [{ MONGODB_URI: 'mongodb://' }, /^MONGODB_URI: names no host/],
  [{ MONGODB_URI: 'mongodb://a,,b/db' }, /^MONGODB_URI: names no host/],
  [{ MONGODB_URI: 'mongodb://mongo:99999/db' }, /^MONGODB_URI: host "mongo:99999" is not a host\[:port\]/],
  [{ MONGODB_URI: 'mongodb+srv://cluster.example:27017/db' }, /^MONGODB_URI: mongodb\+srv:\/\/ takes one host name and no port/],
  [{ MONGODB_URI: 'mongodb://user:p%zz@mongo/db' }, /^MONGODB_URI: the user name, password or database is not percent-encoded/],
  // Combinations that would do nothing.
  [{ AUDIT_ENABLED: 'false', MONGODB_URI: 'mongodb://mongo:27017/db' }, /^MONGODB_URI: does nothing with AUDIT_ENABLED=false/],
  [{ AUDIT_ENABLED: 'false', AUDIT_TTL_DAYS: '30' }, /^AUDIT_TTL_DAYS: does nothing with AUDIT_ENABLED=false/],
  [{ AUDIT_ENABLED: 'false', AUDIT_REQUIRED: 'true' }, /^AUDIT_REQUIRED: true does nothing with AUDIT_ENABLED=false/],
  [{ AUDIT_ENABLED: 'false', METRICS_ENABLED: 'false', STREAM_USAGE: 'inject' }, /^STREAM_USAGE: inject does nothing with audit, metrics and tracing all off/],
  [{ AUDIT_TTL_DAYS: '30' }, /^AUDIT_TTL_DAYS: does nothing without MONGODB_URI/],
  [{ QUOTA_STORE_TIMEOUT_MS: '500' }, /^QUOTA_STORE_TIMEOUT_MS: does nothing without both MONGODB_URI and POLICY_FILE/],
  [{ QUOTA_STORE_TIMEOUT_MS: '500', MONGODB_URI: 'mongodb://mongo:27017/db' }, /^QUOTA_STORE_TIMEOUT_MS: does nothing without both/],
  [{ OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true' }, /^OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: true does nothing with tracing off/],
  // OTEL_* are read here too, and a bad one is refused rather than ignored.
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }, /^OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318\/v1\/traces" is not an http\(s\) URL/],
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_COMPRESSION: 'brotli' }, /^OTEL_EXPORTER_OTLP_COMPRESSION: expected one of gzip, none/],
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: 'soon' }, /^OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: expected a whole number/],
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_BSP_MAX_QUEUE_SIZE: '0' }, /^OTEL_BSP_MAX_QUEUE_SIZE: 0 is out of range/],
  [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'maybe' }, /^OTEL_SDK_DISABLED: expected true or false/],
];

for (const [env, message] of bad) {
  test(`rejects ${JSON.stringify(env)}`, () => {
    assert.throws(() => loadConfig(env), (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'config_invalid');
      assert.match(err.message, message);
      return true;
    });
  });
}

test('INSTITUTIONS_FILE maps fingerprints to institutions; a malformed file is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const good = join(dir, 'inst.json');
  writeFileSync(good, '{"sha256:0123456789abcdef":"faculty-of-law"}');
  assert.equal(loadConfig({ INSTITUTIONS_FILE: good }).audit.institutions.get('sha256:0123456789abcdef'), 'faculty-of-law');
  const broken = join(dir, 'broken.json');
  writeFileSync(broken, '{"x": 1}');
  assert.throws(() => loadConfig({ INSTITUTIONS_FILE: broken }), /INSTITUTIONS_FILE: institution for "x" must be a string/);
});

test('POLICY_FILE: unset is no policy; set, its path and the environment its upstreamKey entries are read from', () => {
  assert.equal(loadConfig({}).policy, null);
  const env = { POLICY_FILE: ' /etc/proxy/policy.yaml ', OPENAI_API_KEY_ACME: 'sk-real' };
  const policy = loadConfig(env).policy;
  assert.equal(policy?.path, '/etc/proxy/policy.yaml');
  assert.equal(policy?.env, env, 'the same environment config.ts reads, not process.env');
  assert.equal(loadConfig({ POLICY_FILE: 'p.JSON' }).policy?.path, 'p.JSON');
  assert.equal(loadConfig({ POLICY_FILE: 'p.yml' }).policy?.path, 'p.yml');
  assert.throws(() => loadConfig({ POLICY_FILE: '/etc/proxy/policy.toml' }), /POLICY_FILE: "\/etc\/proxy\/policy\.toml" must end in \.yaml, \.yml or \.json/);
});

test('INSTITUTIONS_FILE keeps working with POLICY_FILE: both are in the config', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const inst = join(dir, 'inst.json');
  writeFileSync(inst, '{"sha256:0123456789abcdef":"faculty-of-law"}');
  const config = loadConfig({ INSTITUTIONS_FILE: inst, POLICY_FILE: join(dir, 'policy.yaml') });
  assert.equal(config.audit.institutions.get('sha256:0123456789abcdef'), 'faculty-of-law');
  assert.equal(config.policy?.path, join(dir, 'policy.yaml'));
});

test('a bad value stops start-up with one line naming the variable', async () => {
  const run = promisify(execFile);
  await assert.rejects(
    run(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env: { ...process.env, PORT: '123456' } }),
    (err: { code: number; stderr: string }) => {
      assert.equal(err.code, 2);
      assert.equal(err.stderr.trim(), 'openai-api-proxy: invalid configuration: PORT: 123456 is out of range (0 to 65535)');
      return true;
    },
  );
});

test('the same combinations are accepted where they do something', () => {
  assert.equal(loadConfig({ MONGODB_URI: 'mongodb://mongo-0.mongo,mongo-1.mongo:27018/openai_proxy?replicaSet=rs0', AUDIT_TTL_DAYS: '30' }).audit.ttlDays, 30);
  assert.equal(loadConfig({ MONGODB_URI: 'mongodb+srv://user:p%40ss@cluster0.example.net/db?retryWrites=true' }).audit.mongodbUri, 'mongodb+srv://user:p%40ss@cluster0.example.net/db?retryWrites=true');
  assert.equal(loadConfig({ AUDIT_ENABLED: 'false', STREAM_USAGE: 'inject' }).audit.streamUsage, 'inject', 'metrics record the usage');
  assert.equal(loadConfig({ AUDIT_ENABLED: 'false', METRICS_ENABLED: 'false', STREAM_USAGE: 'inject', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }).audit.streamUsage, 'inject', 'spans record the usage');
  assert.equal(loadConfig({ AUDIT_ENABLED: 'false', AUDIT_REQUIRED: 'false' }).audit.required, false);
  assert.equal(loadConfig({ OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318' }).genaiCaptureContent, true);
});

test('OTEL_* are read by config.ts into the tracing slice, the signal-specific names first', () => {
  assert.equal(loadConfig({}).tracing, null);
  assert.deepEqual(
    loadConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
      OTEL_EXPORTER_OTLP_COMPRESSION: 'none',
      OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: 'gzip',
      OTEL_EXPORTER_OTLP_TIMEOUT: '9000',
      OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '2500',
      OTEL_SERVICE_NAME: 'proxy-eu',
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_BSP_EXPORT_TIMEOUT: '1000',
      OTEL_BSP_MAX_QUEUE_SIZE: '4096',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '256',
    }).tracing,
    {
      url: 'http://collector:4318/v1/traces',
      compression: 'gzip',
      timeoutMs: 2500,
      serviceName: 'proxy-eu',
      batch: { scheduleDelayMs: 200, exportTimeoutMs: 1000, maxQueueSize: 4096, maxExportBatchSize: 256 },
    },
  );
  assert.deepEqual(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://c.example/otlp/traces' }).tracing, {
    url: 'https://c.example/otlp/traces',
    compression: null,
    timeoutMs: null,
    serviceName: 'openai-api-proxy',
    batch: { scheduleDelayMs: null, exportTimeoutMs: null, maxQueueSize: null, maxExportBatchSize: null },
  });
});

test('a combination that does nothing stops start-up with one line and exit 2', async () => {
  const run = promisify(execFile);
  const env: NodeJS.ProcessEnv = { ...process.env, AUDIT_ENABLED: 'false', MONGODB_URI: 'mongodb://127.0.0.1:9/db', PORT: '0', ADMIN_PORT: '0' };
  await assert.rejects(run(process.execPath, ['--import', 'tsx', 'src/main.ts'], { env, timeout: 60_000 }), (err: { code: number; stderr: string }) => {
    assert.equal(err.code, 2);
    assert.equal(err.stderr.trim(), 'openai-api-proxy: invalid configuration: MONGODB_URI: does nothing with AUDIT_ENABLED=false (there is no journal to ship)');
    return true;
  });
});

test('with a policy file, MONGODB_URI holds the shared limit counts, so it is taken with audit off', () => {
  const config = loadConfig({ AUDIT_ENABLED: 'false', MONGODB_URI: 'mongodb://mongo:27017/db', POLICY_FILE: '/etc/proxy/policy.yaml', QUOTA_STORE_TIMEOUT_MS: '500' });
  assert.equal(config.audit.mongodbUri, 'mongodb://mongo:27017/db');
  assert.equal(config.audit.quotaStoreTimeoutMs, 500);
});
