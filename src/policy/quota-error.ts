/**
 * The refusal of a request over one of its limits (shared/design/policy-file.md, "Limits"): a 429
 * as OpenAI words its own rate-limit errors, so the official SDKs raise their RateLimitError
 * (https://platform.openai.com/docs/guides/error-codes), with `code: "quota_exceeded"` and the
 * headers that say which window refused and when it ends.
 */
import { ProxyError, type QuotaUse } from '../proxy/errors.ts';
import type { LimitKind, Window } from './types.ts';

/** OpenAI's rate-limit errors carry `type: "requests"` or `"tokens"`; a spent budget is `insufficient_quota`. */
const TYPES: Record<LimitKind, string> = { requests: 'requests', tokens: 'tokens', costUsd: 'insufficient_quota' };

const RETRY_WITHIN_S = 60;

export interface QuotaRefusal {
  /** Who is over: `institution acme` or `virtual key sha256:…`. */
  readonly subject: string;
  readonly window: Window;
  readonly kind: LimitKind;
  readonly limit: number;
  readonly used: number;
  /** When the window ends (ms since the epoch). */
  readonly reset: number;
}

/** What the refusal adds to the plain error: the OpenAI `type`, the record's `quota` and the headers. */
export interface QuotaDetail {
  readonly type: string;
  readonly quota: QuotaUse;
  readonly headers: Readonly<Record<string, string>>;
}

export class QuotaExceededError extends ProxyError {
  readonly code = 'quota_exceeded';
  readonly status = 429;
  readonly type: string;
  readonly outcome = 'rejected';
  override readonly name = 'QuotaExceededError';
  override readonly responseHeaders: Readonly<Record<string, string>>;
  override readonly quota: QuotaUse | null;

  constructor(message: string, detail?: QuotaDetail) {
    super(message);
    this.type = detail?.type ?? TYPES.requests;
    this.quota = detail?.quota ?? null;
    this.responseHeaders = detail?.headers ?? {};
  }
}

/**
 * MongoDB holds the shared counts and does not answer, and the policy says `quotaStoreDown: closed`:
 * a 503 as OpenAI's own "overloaded" answers (the SDKs retry those with backoff).
 */
export class QuotaUnavailableError extends ProxyError {
  readonly code = 'quota_unavailable';
  readonly status = 503;
  readonly type = 'server_error';
  readonly outcome = 'rejected';
  override readonly name = 'QuotaUnavailableError';
}

/** The refusal of `refusal`'s window at `now` (ms since the epoch). */
export function quotaExceeded(refusal: QuotaRefusal, now: number): QuotaExceededError {
  const resetAt = new Date(refusal.reset).toISOString();
  const wait = Math.max(1, Math.ceil((refusal.reset - now) / 1000));
  const message = `${refusal.subject} is over its ${refusal.window} limit of ${refusal.limit} ${unit(refusal.kind)} (used ${round(refusal.used)}); the window resets at ${resetAt}`;
  return new QuotaExceededError(message, {
    type: TYPES[refusal.kind],
    quota: { window: refusal.window, kind: refusal.kind, limit: refusal.limit, used: round(refusal.used) },
    headers: {
      // Whole seconds until the window ends (RFC 9110 §10.2.3), never 0 while it has not.
      'retry-after': String(wait),
      'x-proxy-quota-window': refusal.window,
      'x-proxy-quota-limit': String(refusal.limit),
      'x-proxy-quota-remaining': String(Math.max(0, round(refusal.limit - refusal.used))),
      'x-proxy-quota-reset': resetAt,
      // The OpenAI SDKs sleep for the whole retry-after before retrying a 429; past a minute,
      // tell them not to (the header they obey), so the caller sees the refusal at once.
      ...(wait > RETRY_WITHIN_S ? { 'x-should-retry': 'false' } : {}),
    },
  });
}

function unit(kind: LimitKind): string {
  return kind === 'costUsd' ? 'USD' : kind;
}

/** Cost sums carry float noise; a record or header shows micro-dollars at most. */
export function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}
