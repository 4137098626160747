/**
 * Environment -> typed, validated configuration. A bad value stops start-up with one
 * line naming the variable and what was wrong; nothing is read from the environment elsewhere.
 */
import { readFileSync } from 'node:fs';
import { AppError } from './errors.ts';

export type FsyncPolicy = 'always' | 'interval' | 'never';
export type StreamUsageMode = 'passthrough' | 'inject';

export interface UpstreamRoute {
  prefix: string;
  origin: string;
}

export interface Config {
  host: string;
  port: number;
  adminHost: string;
  adminPort: number;
  /** ADMIN_TOKEN: the bearer token every admin endpoint but /healthz and /readyz requires; null: none. */
  adminToken: string | null;
  upstreamUrl: URL;
  routes: UpstreamRoute[];
  upstreamTimeoutMs: number;
  upstreamMaxConnections: number | null;
  shutdownGraceMs: number;
  client: ClientLimits;
  tls: { cert: Buffer; key: Buffer } | null;
  upstreamCa: Buffer | null;
  egressProxy: { httpProxy: string | null; httpsProxy: string | null; noProxy: string | null };
  forwardedHeaders: boolean;
  /** Bytes the proxy may hold for exchanges: capture copies, inject buffers, unwritten records. */
  memoryBudgetBytes: number;
  audit: AuditConfig;
  metrics: MetricsConfig;
  /** OpenTelemetry traces; null when off (no endpoint, OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none). */
  tracing: TracingConfig | null;
  genaiCaptureContent: boolean;
  /** POLICY_FILE, or null: without it the proxy decides no identity (the header is believed as before). */
  policy: PolicyConfig | null;
}

export interface PolicyConfig {
  path: string;
  /** Where the file's `upstreamKey: { env }` entries are looked up, at start and on each reload. */
  env: Readonly<Record<string, string | undefined>>;
}

/**
 * The OTLP/HTTP trace export, from the standard OTEL_* variables (OpenTelemetry SDK environment
 * variable specification); the exporter's headers and certificates, the sampler and
 * OTEL_RESOURCE_ATTRIBUTES are left to the SDK, which reads them itself.
 */
export interface TracingConfig {
  /** OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as-is, else OTEL_EXPORTER_OTLP_ENDPOINT plus `/v1/traces`. */
  url: string;
  compression: 'gzip' | 'none' | null;
  timeoutMs: number | null;
  serviceName: string;
  /** OTEL_BSP_*: null leaves the SDK's default. */
  batch: {
    scheduleDelayMs: number | null;
    exportTimeoutMs: number | null;
    maxQueueSize: number | null;
    maxExportBatchSize: number | null;
  };
}

/** What one client connection may hold: time for its head, idle time, body stalls, how many at once. */
export interface ClientLimits {
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  bodyTimeoutMs: number;
  maxConnections: number;
  /** The largest WebSocket message relayed, in either direction. */
  wsMaxMessageBytes: number;
}

export interface AuditConfig {
  enabled: boolean;
  dir: string;
  maxBodyBytes: number;
  segmentBytes: number;
  fsync: FsyncPolicy;
  retentionDays: number | null;
  retentionBytes: number | null;
  required: boolean;
  streamUsage: StreamUsageMode;
  institutionHeader: string;
  institutions: ReadonlyMap<string, string>;
  redactHeaders: string[];
  mongodbUri: string | null;
  mongodbDb: string;
  ttlDays: number | null;
  /** With POLICY_FILE limits and MONGODB_URI: the bound on each call to the shared quota counters. */
  quotaStoreTimeoutMs: number;
}

export interface MetricsConfig {
  enabled: boolean;
  maxModels: number;
  maxInstitutions: number;
  /** Series one metric may expose (a histogram's label combination is a series per bucket, +3). */
  maxSeriesPerMetric: number;
}

/** A bad value, or a combination of values that would do nothing: start-up stops with exit 2. */
export class ConfigError extends AppError {
  readonly code = 'config_invalid';
  /** Never answers a request: start-up stops (exit 2). */
  readonly status = 500;
  constructor(readonly variable: string, problem: string) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value === '' ? undefined : value;
}

function str(env: Env, name: string, fallback: string): string {
  return raw(env, name) ?? fallback;
}

function adminToken(env: Env): string | null {
  const value = raw(env, 'ADMIN_TOKEN');
  if (value === undefined) return null;
  // RFC 6750 §2.1 b64token: what an Authorization header can carry as it is.
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(value)) throw new ConfigError('ADMIN_TOKEN', 'expected a bearer token (letters, digits and -._~+/, then = padding)');
  if (value.length < 16) throw new ConfigError('ADMIN_TOKEN', `too short (${value.length} characters); use at least 16, e.g. openssl rand -hex 32`);
  return value;
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value)) throw new ConfigError(name, `expected a whole number, got "${value}"`);
  const n = Number(value);
  if (n < min || n > max) throw new ConfigError(name, `${n} is out of range (${min} to ${max})`);
  return n;
}

function optionalInt(env: Env, name: string, min: number, max: number): number | null {
  return raw(env, name) === undefined ? null : int(env, name, 0, min, max);
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const value = raw(env, name)?.toLowerCase();
  if (value === undefined) return fallback;
  if (['true', '1', 'yes', 'on'].includes(value)) return true;
  if (['false', '0', 'no', 'off'].includes(value)) return false;
  throw new ConfigError(name, `expected true or false, got "${value}"`);
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const value = raw(env, name);
  if (value === undefined) return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(name, `expected one of ${allowed.join(', ')}, got "${value}"`);
}

function httpUrl(name: string, value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(name, `"${value}" is not an absolute URL (it needs a scheme, e.g. https://)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(name, `"${value}" must use http:// or https://`);
  }
  if (url.search || url.hash) throw new ConfigError(name, `"${value}" must not carry a query or fragment`);
  return url;
}

function file(name: string, path: string | undefined): Buffer | null {
  if (path === undefined) return null;
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(name, `cannot read "${path}": ${(err as Error).message}`);
  }
}

function parseJson(name: string, text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError(name, `malformed JSON: ${(err as Error).message}`);
  }
}

function routes(env: Env): UpstreamRoute[] {
  const value = raw(env, 'UPSTREAM_ROUTES');
  if (value === undefined) return [];
  const parsed = parseJson('UPSTREAM_ROUTES', value);
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('UPSTREAM_ROUTES', 'expected a JSON object of path prefix to origin URL');
  }
  return Object.entries(parsed).map(([prefix, origin]) => {
    if (!prefix.startsWith('/')) throw new ConfigError('UPSTREAM_ROUTES', `prefix "${prefix}" must start with /`);
    if (typeof origin !== 'string') throw new ConfigError('UPSTREAM_ROUTES', `origin for "${prefix}" must be a string`);
    return { prefix, origin: httpUrl('UPSTREAM_ROUTES', origin).href.replace(/\/$/, '') };
  });
}

function institutions(env: Env): ReadonlyMap<string, string> {
  const path = raw(env, 'INSTITUTIONS_FILE');
  const content = file('INSTITUTIONS_FILE', path);
  if (content === null) return new Map();
  const parsed = parseJson('INSTITUTIONS_FILE', content.toString('utf8'));
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError('INSTITUTIONS_FILE', 'expected a JSON object of API-key fingerprint to institution');
  }
  const map = new Map<string, string>();
  for (const [fingerprint, institution] of Object.entries(parsed)) {
    if (typeof institution !== 'string') {
      throw new ConfigError('INSTITUTIONS_FILE', `institution for "${fingerprint}" must be a string`);
    }
    map.set(fingerprint, institution);
  }
  return map;
}

function policyFile(env: Env): PolicyConfig | null {
  const path = raw(env, 'POLICY_FILE');
  if (path === undefined) return null;
  // The file itself is read and checked by the runtime's PolicyStore (reloads read it again).
  if (!/\.(ya?ml|json)$/i.test(path)) throw new ConfigError('POLICY_FILE', `"${path}" must end in .yaml, .yml or .json (the format is chosen by extension)`);
  return { path, env };
}

function tls(env: Env): Config['tls'] {
  const certPath = raw(env, 'TLS_CERT_FILE');
  const keyPath = raw(env, 'TLS_KEY_FILE');
  if (certPath === undefined && keyPath === undefined) return null;
  if (certPath === undefined) throw new ConfigError('TLS_CERT_FILE', 'is required when TLS_KEY_FILE is set');
  if (keyPath === undefined) throw new ConfigError('TLS_KEY_FILE', 'is required when TLS_CERT_FILE is set');
  return { cert: file('TLS_CERT_FILE', certPath) as Buffer, key: file('TLS_KEY_FILE', keyPath) as Buffer };
}

function egressProxy(env: Env): Config['egressProxy'] {
  const pick = (name: string): string | null => {
    const value = raw(env, name) ?? raw(env, name.toLowerCase());
    return value === undefined ? null : httpUrl(name, value).href;
  };
  return {
    httpProxy: pick('HTTP_PROXY'),
    httpsProxy: pick('HTTPS_PROXY'),
    noProxy: raw(env, 'NO_PROXY') ?? raw(env, 'no_proxy') ?? null,
  };
}

const MIB = 1024 * 1024;

function clientLimits(env: Env): ClientLimits {
  return {
    headersTimeoutMs: int(env, 'CLIENT_HEADERS_TIMEOUT_MS', 30_000, 1, 86_400_000),
    // Above the 60 s idle timeout of common load balancers, so they close first (no race).
    idleTimeoutMs: int(env, 'CLIENT_IDLE_TIMEOUT_MS', 65_000, 1, 86_400_000),
    bodyTimeoutMs: int(env, 'CLIENT_BODY_TIMEOUT_MS', 60_000, 1, 86_400_000),
    maxConnections: int(env, 'MAX_CLIENT_CONNECTIONS', 4096, 1, 1_000_000),
    // The Realtime API takes up to 15 MiB of audio in one input_audio_buffer.append event
    // (OpenAI API reference, RealtimeClientEventInputAudioBufferAppend), base64 in JSON.
    wsMaxMessageBytes: int(env, 'WS_MAX_MESSAGE_BYTES', 32 * MIB, 1024, 1024 * MIB),
  };
}

function audit(env: Env): AuditConfig {
  return {
    enabled: bool(env, 'AUDIT_ENABLED', true),
    dir: str(env, 'AUDIT_DIR', './data/audit'),
    maxBodyBytes: int(env, 'AUDIT_MAX_BODY_BYTES', MIB, 0, 8 * MIB),
    segmentBytes: int(env, 'AUDIT_SEGMENT_BYTES', 64 * MIB, 4096, 4096 * MIB),
    fsync: oneOf(env, 'AUDIT_FSYNC', 'interval', ['always', 'interval', 'never']),
    retentionDays: optionalInt(env, 'AUDIT_RETENTION_DAYS', 1, 100_000),
    retentionBytes: optionalInt(env, 'AUDIT_RETENTION_BYTES', 4096, Number.MAX_SAFE_INTEGER),
    required: bool(env, 'AUDIT_REQUIRED', false),
    streamUsage: oneOf(env, 'STREAM_USAGE', 'passthrough', ['passthrough', 'inject']),
    institutionHeader: str(env, 'INSTITUTION_HEADER', 'x-institution-id').toLowerCase(),
    institutions: institutions(env),
    redactHeaders: (raw(env, 'AUDIT_REDACT_HEADERS') ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase())
      .filter((h) => h !== ''),
    mongodbUri: mongodbUri(raw(env, 'MONGODB_URI')),
    mongodbDb: str(env, 'MONGODB_DB', 'openai_proxy'),
    quotaStoreTimeoutMs: int(env, 'QUOTA_STORE_TIMEOUT_MS', 200, 10, 60_000),
    ttlDays: optionalInt(env, 'AUDIT_TTL_DAYS', 1, 100_000),
  };
}

/** The first of `names` that is set, for the OTEL_* pairs where the signal's own name wins. */
function firstSet(env: Env, names: readonly string[]): string | undefined {
  return names.find((name) => raw(env, name) !== undefined);
}

function optionalIntOf(env: Env, names: readonly string[], min: number, max: number): number | null {
  const name = firstSet(env, names);
  return name === undefined ? null : int(env, name, 0, min, max);
}

function tracing(env: Env): TracingConfig | null {
  const specific = raw(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  const base = raw(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  if (specific === undefined && base === undefined) return null;
  if (bool(env, 'OTEL_SDK_DISABLED', false) || raw(env, 'OTEL_TRACES_EXPORTER') === 'none') return null;
  // The signal endpoint is used as-is; the base one gets the signal's path (OTLP exporter spec).
  const url = specific ?? `${(base as string).replace(/\/+$/, '')}/v1/traces`;
  if (!/^https?:$/.test(URL.parse(url)?.protocol ?? '')) {
    throw new ConfigError(specific === undefined ? 'OTEL_EXPORTER_OTLP_ENDPOINT' : 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', `"${url}" is not an http(s) URL`);
  }
  const compression = firstSet(env, ['OTEL_EXPORTER_OTLP_TRACES_COMPRESSION', 'OTEL_EXPORTER_OTLP_COMPRESSION']);
  return {
    url,
    compression: compression === undefined ? null : oneOf<'gzip' | 'none'>(env, compression, 'none', ['gzip', 'none']),
    timeoutMs: optionalIntOf(env, ['OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', 'OTEL_EXPORTER_OTLP_TIMEOUT'], 1, 86_400_000),
    serviceName: str(env, 'OTEL_SERVICE_NAME', 'openai-api-proxy'),
    batch: {
      scheduleDelayMs: optionalInt(env, 'OTEL_BSP_SCHEDULE_DELAY', 1, 86_400_000),
      exportTimeoutMs: optionalInt(env, 'OTEL_BSP_EXPORT_TIMEOUT', 1, 86_400_000),
      maxQueueSize: optionalInt(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 1, 10_000_000),
      maxExportBatchSize: optionalInt(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 1, 10_000_000),
    },
  };
}

/**
 * The form of a MongoDB connection string (https://www.mongodb.com/docs/manual/reference/connection-string/),
 * checked at start rather than when the shipper first connects: the scheme, a host list (one host
 * without a port for +srv), percent-encoded credentials, ports in range.
 */
function mongodbUri(value: string | undefined): string | null {
  if (value === undefined) return null;
  const fail = (problem: string): never => {
    // The URI may carry a password: the message names the problem, not the value.
    throw new ConfigError('MONGODB_URI', problem);
  };
  const match = /^(mongodb|mongodb\+srv):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/.exec(value);
  if (match === null) return fail('expected mongodb://host[:port][,host...][/db][?options] or mongodb+srv://host[/db][?options]');
  const [, scheme, userinfo, hostList = '', path] = match;
  try {
    if (userinfo !== undefined) decodeURIComponent(userinfo);
    if (path !== undefined) decodeURIComponent(path);
  } catch {
    fail('the user name, password or database is not percent-encoded');
  }
  const hosts = hostList.split(',');
  if (hosts.some((host) => host === '')) fail('names no host');
  if (scheme === 'mongodb+srv' && (hosts.length !== 1 || /:\d*$/.test(hosts[0] as string))) fail('mongodb+srv:// takes one host name and no port');
  for (const host of hosts) {
    if (!URL.canParse(`mongodb://${host}`)) fail(`host "${host}" is not a host[:port] (ports 0 to 65535)`);
  }
  return value;
}

/**
 * Settings that would do nothing as combined: refused, so that an operator never believes a
 * safeguard is on (AUDIT_REQUIRED with no journal) or records ship (MONGODB_URI with no journal).
 */
function refuseIneffective(env: Env, config: Config): void {
  if (!config.audit.enabled) {
    // With a policy file, MONGODB_URI also holds the shared limit counts.
    const unused = config.policy === null ? ['MONGODB_URI', 'AUDIT_TTL_DAYS'] : ['AUDIT_TTL_DAYS'];
    for (const name of unused) {
      if (raw(env, name) !== undefined) throw new ConfigError(name, 'does nothing with AUDIT_ENABLED=false (there is no journal to ship)');
    }
    if (config.audit.required) throw new ConfigError('AUDIT_REQUIRED', 'true does nothing with AUDIT_ENABLED=false (there is no journal to require)');
    if (config.audit.streamUsage === 'inject' && !config.metrics.enabled && config.tracing === null) {
      throw new ConfigError('STREAM_USAGE', 'inject does nothing with audit, metrics and tracing all off (nothing records the usage)');
    }
  }
  if (config.audit.mongodbUri === null && config.audit.ttlDays !== null) {
    throw new ConfigError('AUDIT_TTL_DAYS', 'does nothing without MONGODB_URI (it is the TTL of the MongoDB collection)');
  }
  if (raw(env, 'QUOTA_STORE_TIMEOUT_MS') !== undefined && (config.audit.mongodbUri === null || config.policy === null)) {
    throw new ConfigError('QUOTA_STORE_TIMEOUT_MS', 'does nothing without both MONGODB_URI and POLICY_FILE (it bounds the shared limit counts)');
  }
  if (config.tracing === null && config.genaiCaptureContent) {
    throw new ConfigError('OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT', 'true does nothing with tracing off (set OTEL_EXPORTER_OTLP_ENDPOINT)');
  }
}

export function loadConfig(env: Env = process.env): Config {
  const config = readConfig(env);
  refuseIneffective(env, config);
  return config;
}

function readConfig(env: Env): Config {
  const host = str(env, 'HOST', '127.0.0.1');
  return {
    host,
    port: int(env, 'PORT', 8000, 0, 65535),
    adminHost: str(env, 'ADMIN_HOST', host),
    adminPort: int(env, 'ADMIN_PORT', 9464, 0, 65535),
    adminToken: adminToken(env),
    upstreamUrl: httpUrl('UPSTREAM_URL', str(env, 'UPSTREAM_URL', 'https://api.openai.com')),
    routes: routes(env),
    upstreamTimeoutMs: int(env, 'UPSTREAM_TIMEOUT_MS', 600_000, 1, 86_400_000),
    upstreamMaxConnections: optionalInt(env, 'UPSTREAM_MAX_CONNECTIONS', 1, 1_000_000),
    shutdownGraceMs: int(env, 'SHUTDOWN_GRACE_MS', 30_000, 0, 86_400_000),
    client: clientLimits(env),
    tls: tls(env),
    upstreamCa: file('UPSTREAM_CA_FILE', raw(env, 'UPSTREAM_CA_FILE')),
    egressProxy: egressProxy(env),
    forwardedHeaders: bool(env, 'FORWARDED_HEADERS', false),
    // Keeps a 1 GiB pod well clear of its limit under the probes (README, "Memory budget").
    memoryBudgetBytes: int(env, 'MEMORY_BUDGET_BYTES', 64 * MIB, MIB, Number.MAX_SAFE_INTEGER),
    audit: audit(env),
    metrics: {
      enabled: bool(env, 'METRICS_ENABLED', true),
      maxModels: int(env, 'METRICS_MAX_MODELS', 50, 1, 10_000),
      maxInstitutions: int(env, 'METRICS_MAX_INSTITUTIONS', 100, 1, 100_000),
      maxSeriesPerMetric: int(env, 'METRICS_MAX_SERIES_PER_METRIC', 5000, 100, 1_000_000),
    },
    tracing: tracing(env),
    genaiCaptureContent: bool(env, 'OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT', false),
    policy: policyFile(env),
  };
}
