/**
 * Who an exchange belongs to, without keeping any secret: the API key becomes a fingerprint
 * and a hint, secret headers are redacted, and the institution is resolved from a header or
 * from the key's fingerprint.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { HeaderMap } from './record.ts';
import { fingerprint, identify, type ApiKeyIdentity } from '../../fingerprint.ts';
import { isSecretName, maskKeys, REDACTED } from '../../capture/secrets.ts';

export { fingerprint, identify, type ApiKeyIdentity };

export { REDACTED };
const ALWAYS_REDACTED = ['authorization', 'api-key', 'openai-api-key', 'cookie', 'set-cookie', 'proxy-authorization'];
// Browsers cannot set headers on a WebSocket, so the Realtime API takes the key as a subprotocol.
// Subprotocol tokens compare case-sensitively (RFC 6455 §4.1), but a client may spell the prefix
// in any case and still send its key: it is found, and redacted, in any case.
const SUBPROTOCOL_KEY = /(openai-insecure-api-key\.)([^,\s]+)/i;
// Redaction must catch every key offered, not just the first.
const SUBPROTOCOL_KEYS = new RegExp(SUBPROTOCOL_KEY.source, 'gi');
// RFC 6750 §2.1: the credential is everything after the scheme (trailing spaces are not sent).
const BEARER = /^Bearer\s+(.+)$/is;

export function apiKeyOf(headers: IncomingHttpHeaders): string | null {
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const credential = BEARER.exec(authorization)?.[1]?.trim();
    if (credential !== undefined && credential !== '') return credential;
  }
  const apiKey = headers['api-key'] ?? headers['openai-api-key'];
  if (typeof apiKey === 'string' && apiKey !== '') return apiKey;
  const protocol = headers['sec-websocket-protocol'];
  return protocol === undefined ? null : (SUBPROTOCOL_KEY.exec(protocol)?.[2] ?? null);
}

/**
 * Redacts a header map for the record: a header named in ALWAYS_REDACTED or AUDIT_REDACT_HEADERS,
 * or whose name holds a credential word (secrets.ts: `x-api-key`, `x-goog-api-key`,
 * `x-amz-security-token`, not `x-ratelimit-remaining-tokens`), keeps its name with `[redacted]`;
 * an OpenAI key anywhere else in a value is masked.
 */
export class HeaderRedactor {
  readonly #redacted: Set<string>;

  constructor(extra: readonly string[]) {
    this.#redacted = new Set([...ALWAYS_REDACTED, ...extra.map((h) => h.toLowerCase())]);
  }

  #secret(lower: string): boolean {
    return this.#redacted.has(lower) || isSecretName(lower);
  }

  /** Lower-case names; repeated headers become arrays; secrets keep their name with `[redacted]`. */
  redact(headers: Record<string, string | string[] | undefined>): HeaderMap {
    const out: HeaderMap = {};
    for (const name in headers) {
      const value = headers[name];
      if (value === undefined) continue;
      const lower = name.toLowerCase();
      if (this.#secret(lower)) out[lower] = REDACTED;
      else if (lower === 'sec-websocket-protocol') out[lower] = redactSubprotocol(value);
      else out[lower] = maskValue(value);
    }
    return out;
  }

  /**
   * From node's rawHeaders, so repeated request headers are all kept, in order. The same as
   * `redact` of the grouped headers, in one pass.
   */
  redactRaw(rawHeaders: readonly string[]): HeaderMap {
    const out: HeaderMap = {};
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = (rawHeaders[i] as string).toLowerCase();
      if (this.#secret(name)) {
        out[name] = REDACTED;
        continue;
      }
      const value = maskKeys(rawHeaders[i + 1] as string);
      const prior = out[name];
      out[name] = prior === undefined ? value : Array.isArray(prior) ? [...prior, value] : [prior, value];
    }
    const protocol = out['sec-websocket-protocol'];
    if (protocol !== undefined) out['sec-websocket-protocol'] = redactSubprotocol(protocol);
    return out;
  }
}

function maskValue(value: string | string[]): string | string[] {
  return Array.isArray(value) ? value.map(maskKeys) : maskKeys(value);
}

function redactSubprotocol(value: string | string[]): string | string[] {
  const scrub = (v: string): string => maskKeys(v.replace(SUBPROTOCOL_KEYS, `$1${REDACTED}`));
  return Array.isArray(value) ? value.map(scrub) : scrub(value);
}

export class InstitutionResolver {
  readonly #header: string;
  readonly #byFingerprint: ReadonlyMap<string, string>;

  constructor(header: string, byFingerprint: ReadonlyMap<string, string>) {
    this.#header = header.toLowerCase();
    this.#byFingerprint = byFingerprint;
  }

  resolve(headers: IncomingHttpHeaders, key: ApiKeyIdentity | null): string | null {
    return this.resolveWithSource(headers, key).institution;
  }

  /** Without POLICY_FILE: the header is believed from anyone, then INSTITUTIONS_FILE by key. */
  resolveWithSource(headers: IncomingHttpHeaders, key: ApiKeyIdentity | null): { institution: string | null; source: 'key' | 'header' | null } {
    const fromHeader = headers[this.#header];
    const value = Array.isArray(fromHeader) ? fromHeader[0] : fromHeader;
    if (value !== undefined && value.trim() !== '') return { institution: value.trim(), source: 'header' };
    const institution = key === null ? undefined : this.#byFingerprint.get(key.fingerprint);
    return institution === undefined ? { institution: null, source: null } : { institution, source: 'key' };
  }
}
