/**
 * Every failure the proxy can meet, as a class with a stable `code`, the HTTP status it maps
 * to and the audit outcome; `describeError` is the one place that turns any error into what
 * the client, the span's `error.type` and the metric label see.
 */
import type { Outcome } from './outcome.ts';
import { AppError } from '../errors.ts';

const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** An error the client sees: the base's code and status, with the OpenAI `type` and the audit outcome. */
export abstract class ProxyError extends AppError {
  /** The OpenAI error `type` the client's SDK reads. */
  abstract readonly type: string;
  abstract readonly outcome: Outcome;
  /** Response headers the refusal adds (e.g. `retry-after`), lower-case names. */
  readonly responseHeaders: Readonly<Record<string, string>> = NO_HEADERS;
  /** For a quota refusal, the record's `quota` (shared/design/policy-file.md, "Records"). */
  readonly quota: QuotaUse | null = null;
}

/** Which limit refused a request, and how much of it was used. */
export interface QuotaUse {
  readonly window: string;
  readonly kind: string;
  readonly limit: number;
  readonly used: number;
}

export class UpstreamUnreachableError extends ProxyError {
  readonly code = 'upstream_unreachable';
  readonly status = 502;
  readonly type = 'upstream_error';
  readonly outcome = 'upstream_unreachable';
  override readonly name = 'UpstreamUnreachableError';
}

export class UpstreamTimeoutError extends ProxyError {
  readonly code = 'upstream_timeout';
  readonly status = 504;
  readonly type = 'upstream_error';
  readonly outcome = 'upstream_timeout';
  override readonly name = 'UpstreamTimeoutError';
}

/** The upstream connection broke after the response had started. */
export class UpstreamResetError extends ProxyError {
  readonly code = 'upstream_reset';
  readonly status = 502;
  readonly type = 'upstream_error';
  readonly outcome = 'upstream_reset';
  override readonly name = 'UpstreamResetError';
}

/** The client went away; nothing is sent back (499 is nginx's convention for the record). */
export class ClientAbortedError extends ProxyError {
  readonly code = 'client_aborted';
  readonly status = 499;
  readonly type = 'client_error';
  readonly outcome = 'client_aborted';
  override readonly name = 'ClientAbortedError';
}

export class InvalidRequestTargetError extends ProxyError {
  readonly code = 'invalid_request_target';
  readonly status = 400;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'InvalidRequestTargetError';
}

/** A request the proxy cannot forward as it stands (e.g. an invalid WebSocket subprotocol list). */
export class MalformedRequestError extends ProxyError {
  readonly code = 'malformed_request';
  readonly status = 400;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'MalformedRequestError';
}

/** Request headers over node's limit (RFC 6585 §5). */
export class HeadersTooLargeError extends ProxyError {
  readonly code = 'headers_too_large';
  readonly status = 431;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'HeadersTooLargeError';
}

/** The client took longer than CLIENT_HEADERS_TIMEOUT_MS for its head, or stalled its body past CLIENT_BODY_TIMEOUT_MS. */
export class ClientTimeoutError extends ProxyError {
  readonly code = 'client_timeout';
  readonly status = 408;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'ClientTimeoutError';
}

/** An `Expect` other than 100-continue (RFC 9110 §10.1.1). */
export class ExpectationFailedError extends ProxyError {
  readonly code = 'expectation_failed';
  readonly status = 417;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'ExpectationFailedError';
}

/** CONNECT: this is a reverse proxy for the API, not a tunnel (RFC 9110 §9.3.6). */
export class MethodNotAllowedError extends ProxyError {
  readonly code = 'method_not_allowed';
  readonly status = 405;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'MethodNotAllowedError';
}

/** A path the admin port does not serve (the proxy port forwards every path). */
export class NotFoundError extends ProxyError {
  readonly code = 'not_found';
  readonly status = 404;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'NotFoundError';
}

/** The admin port's ADMIN_TOKEN is set and the request did not carry it as its bearer token. */
export class AdminUnauthorizedError extends ProxyError {
  readonly code = 'invalid_admin_token';
  readonly status = 401;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'AdminUnauthorizedError';
  // RFC 6750 §3: a 401 names the scheme it wants.
  override readonly responseHeaders = Object.freeze({ 'www-authenticate': 'Bearer realm="openai-api-proxy admin"' });
}

/** An `Upgrade` to anything but WebSocket (e.g. h2c). */
export class UnsupportedUpgradeError extends ProxyError {
  readonly code = 'unsupported_upgrade';
  readonly status = 400;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'UnsupportedUpgradeError';
}

/** A WebSocket message over WS_MAX_MESSAGE_BYTES: the session is closed 1009 on both sides. */
export class MessageTooBigError extends ProxyError {
  readonly code = 'message_too_big';
  readonly status = 413;
  readonly type = 'invalid_request_error';
  readonly outcome = 'rejected';
  override readonly name = 'MessageTooBigError';
}

/** MAX_CLIENT_CONNECTIONS are open: a new connection is answered this and closed. */
export class TooManyConnectionsError extends ProxyError {
  readonly code = 'too_many_connections';
  readonly status = 503;
  readonly type = 'service_unavailable';
  readonly outcome = 'rejected';
  override readonly name = 'TooManyConnectionsError';
}

/** AUDIT_REQUIRED=true and the journal cannot write: fail closed. */
export class AuditUnavailableError extends ProxyError {
  readonly code = 'audit_unavailable';
  readonly status = 503;
  readonly type = 'service_unavailable';
  readonly outcome = 'rejected';
  override readonly name = 'AuditUnavailableError';
}

export class ShuttingDownError extends ProxyError {
  readonly code = 'shutting_down';
  readonly status = 503;
  readonly type = 'service_unavailable';
  readonly outcome = 'rejected';
  override readonly name = 'ShuttingDownError';
}

/** An exchange still running when the shutdown grace ran out, cut by the proxy. */
export class CutByShutdownError extends ProxyError {
  readonly code = 'shutdown';
  readonly status = 503;
  readonly type = 'service_unavailable';
  readonly outcome = 'shutdown';
  override readonly name = 'CutByShutdownError';
}

export class InternalProxyError extends ProxyError {
  readonly code = 'proxy_internal_error';
  readonly status = 500;
  readonly type = 'server_error';
  readonly outcome = 'rejected';
  override readonly name = 'InternalProxyError';
}

export interface ErrorDescription {
  status: number;
  /** OpenAI-shaped JSON body. */
  body: string;
  /** Low-cardinality label for `error.type` and metrics. */
  errorType: string;
  outcome: Outcome;
  message: string;
  /** Headers the error's response carries besides content-type and length. */
  headers: Readonly<Record<string, string>>;
}

export function describeError(err: unknown): ErrorDescription {
  const proxyError = err instanceof ProxyError ? err : new InternalProxyError('internal proxy error', { cause: err });
  const body = JSON.stringify({
    error: { message: proxyError.message, type: proxyError.type, param: null, code: proxyError.code },
  });
  return {
    status: proxyError.status,
    body,
    errorType: proxyError.code,
    outcome: proxyError.outcome,
    message: proxyError.message,
    headers: proxyError.responseHeaders,
  };
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
const ABORT_CODES = new Set(['UND_ERR_ABORTED', 'ABORT_ERR']);

function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    if (err instanceof Error && err.name === 'AbortError') return 'ABORT_ERR';
  }
  return 'UNKNOWN';
}

function detail(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`;
}

/**
 * Classifies an upstream failure. `responseStarted` tells whether the client has already
 * received the response head: after it, a broken connection is a reset, not unreachable.
 */
export function upstreamError(err: unknown, origin: string, responseStarted: boolean): ProxyError {
  if (err instanceof ProxyError) return err;
  const code = errorCode(err);
  if (ABORT_CODES.has(code)) return new ClientAbortedError('client closed the connection', { cause: err });
  if (TIMEOUT_CODES.has(code)) {
    return new UpstreamTimeoutError(`no data from upstream ${origin} within the timeout`, { cause: err });
  }
  if (responseStarted) {
    return new UpstreamResetError(`upstream ${origin} broke the connection mid-response (${code})`, { cause: err });
  }
  return new UpstreamUnreachableError(`upstream ${origin} unreachable: ${detail(err)}`, { cause: err });
}

/**
 * MEMORY_BUDGET_BYTES is spent: a feature that must hold a body (STREAM_USAGE=inject) refuses
 * rather than let memory grow; the client may retry (503, as OpenAI's own overload answer).
 */
export class ProxyOverloadedError extends ProxyError {
  readonly code = 'proxy_overloaded';
  readonly status = 503;
  readonly type = 'service_unavailable';
  readonly outcome = 'rejected';
  override readonly name = 'ProxyOverloadedError';
}
