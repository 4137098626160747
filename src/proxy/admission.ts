/**
 * Admission: the decision the core asks for before it forwards anything (policy, identity,
 * audit availability). The core applies what the decision says without knowing why: it refuses,
 * or it forwards with the header and subprotocol rewrites it is given, and it carries the
 * identity on the exchange for the observers. Admission is a hook, not a branch in the core.
 */
import { InternalProxyError, type ProxyError } from './errors.ts';
import type { Exchange } from './observer.ts';

/**
 * Whose exchange this is, as admission found it: plain data the core carries on the exchange for
 * the observers (the record's `institution`, `institutionSource` and `apiKey`) and never reads.
 */
export interface ExchangeIdentity {
  readonly institution: string | null;
  /** The record's `institutionSource` (shared/design/policy-file.md, "Records"). */
  readonly source: 'virtual_key' | 'key' | 'header' | null;
  /** Of the credential the client sent (never of a key the proxy put in its place). */
  readonly apiKey: { readonly fingerprint: string; readonly hint: string } | null;
}

/** What to change on the way upstream, and how to map what upstream chose back for the client. */
export interface UpstreamRewrite {
  /**
   * The flat `[name, value, ...]` headers to send upstream instead of `flat` (hop-by-hop and
   * always-dropped headers are already gone; the observers have already seen `flat`).
   */
  headers(flat: readonly string[]): string[];
  /** The WebSocket subprotocols to offer upstream, for the ones the client offered. */
  subprotocols(offered: readonly string[]): string[];
  /** The subprotocol to confirm to the client for the one upstream chose; '' confirms none. */
  clientSubprotocol(chosen: string, offered: readonly string[]): string;
}

export interface AdmissionDecision {
  /** Non-null: the client gets this error and nothing is sent upstream. */
  readonly refusal: ProxyError | null;
  /** Set on the exchange whether admitted or refused (a refused request is still someone's). */
  readonly identity: ExchangeIdentity | null;
  /** Null: forward as the client sent it. */
  readonly rewrite: UpstreamRewrite | null;
}

/**
 * Asked once per exchange, before anything goes upstream. A promise only when the decision needs
 * I/O (a limit counted in a shared store); the core stays synchronous otherwise.
 */
export type AdmissionHook = (exchange: Exchange) => AdmissionDecision | Promise<AdmissionDecision>;

/** A decision that failed to come (a bug in a hook): the exchange is refused, never forwarded unchecked. */
export function decided(pending: Promise<AdmissionDecision>): Promise<AdmissionDecision> {
  return pending.catch((err: unknown) => refusedBy(new InternalProxyError('admission failed', { cause: err })));
}

export const ADMITTED: AdmissionDecision = Object.freeze({ refusal: null, identity: null, rewrite: null });

export function refusedBy(refusal: ProxyError, identity: ExchangeIdentity | null = null): AdmissionDecision {
  return { refusal, identity, rewrite: null };
}
