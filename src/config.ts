/**
 * Environment -> typed, validated configuration. A bad value stops start-up with one
 * line naming the variable and what was wrong; nothing is read from the environment elsewhere.
 */
import { readFileSync } from 'node:fs';

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
  genaiCaptureContent: boolean;
  /** POLICY_FILE, or null: without it the proxy decides no identity (the header is believed as before). */
  policy: PolicyConfig | null;
}

export interface PolicyConfig {
  path: string;
  /** Where the file's `upstreamKey: { env }` entries are looked up, at start and on each reload. */
  env: Readonly<Record<string, string | undefined>>;
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
}

export interface MetricsConfig {
  enabled: boolean;
  maxModels: number;
  maxInstitutions: number;
  /** Series one metric may expose (a histogram's label combination is a series per bucket, +3). */
  maxSeriesPerMetric: number;
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
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
    mongodbUri: raw(env, 'MONGODB_URI') ?? null,
    mongodbDb: str(env, 'MONGODB_DB', 'openai_proxy'),
    ttlDays: optionalInt(env, 'AUDIT_TTL_DAYS', 1, 100_000),
  };
}

export function loadConfig(env: Env = process.env): Config {
  const host = str(env, 'HOST', '127.0.0.1');
  return {
    host,
    port: int(env, 'PORT', 8000, 0, 65535),
    adminHost: str(env, 'ADMIN_HOST', host),
    adminPort: int(env, 'ADMIN_PORT', 9464, 0, 65535),
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
    memoryBudgetBytes: int(env, 'MEMORY_BUDGET_BYTES', 96 * MIB, MIB, Number.MAX_SAFE_INTEGER),
    audit: audit(env),
    metrics: {
      enabled: bool(env, 'METRICS_ENABLED', true),
      maxModels: int(env, 'METRICS_MAX_MODELS', 50, 1, 10_000),
      maxInstitutions: int(env, 'METRICS_MAX_INSTITUTIONS', 100, 1, 100_000),
      maxSeriesPerMetric: int(env, 'METRICS_MAX_SERIES_PER_METRIC', 5000, 100, 1_000_000),
    },
    genaiCaptureContent: bool(env, 'OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT', false),
    policy: policyFile(env),
  };
}
