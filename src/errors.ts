/**
 * The one base of every error this program raises on purpose: a stable `code` (snake_case, the
 * style of the OpenAI API's own error codes, https://platform.openai.com/docs/guides/error-codes)
 * and the HTTP status it maps to. Every layer may import it; it imports nothing.
 * Errors that reach a client are ProxyError (proxy/errors.ts), which adds the OpenAI `type`
 * and the audit `outcome`; the others (configuration, journal, shipper, policy) keep their
 * status for when one is described to a caller (a 500, or a 503 for a store that is down).
 */
export abstract class AppError extends Error {
  /** Stable, snake_case, unique to the class: logs, metrics and clients may match on it. */
  abstract readonly code: string;
  /** The HTTP status the error maps to when it answers a request. */
  abstract readonly status: number;
}
