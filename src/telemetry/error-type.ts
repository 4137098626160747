/**
 * The one builder of `error.type` (GenAI semantic conventions, gen-ai-spans and gen-ai-metrics:
 * https://opentelemetry.io/docs/specs/semconv/gen-ai/): the GenAI CLIENT span's attribute and the
 * `error_type` label of gen_ai_client_operation_duration both come from `operationErrorType`, so
 * an exchange is counted under the name its span carries.
 *
 * The rule, in order: the proxy's own error code when the proxy failed the exchange (e.g.
 * `upstream_timeout`); else the provider's error `code`, else its `type`, from an OpenAI-shaped
 * error body (e.g. `rate_limit_exceeded`); else the HTTP status as a string (e.g. `502`); else
 * `_OTHER`. A client that hung up is no error of the operation's own: the upstream's answer decides.
 */

/** What the builder reads of an exchange's outcome (the exchange's facts have it). */
export interface ErrorFacts {
  outcome: string;
  /** The proxy's own error, `type` being its code. */
  error: { type: string } | null;
  /** What the client got: upstream's status, else the proxy's own error status. */
  status: number | null;
  /** A 4xx/5xx OpenAI-shaped answer's `error.code`, else its `error.type`. */
  upstreamErrorCode: string | null;
}

/** The semconv's fallback when no better name is known. */
export const OTHER_ERROR_TYPE = '_OTHER';

/** The name of a failure, whichever side failed. */
export function errorTypeOf(facts: ErrorFacts): string {
  if (facts.error !== null && facts.outcome !== 'client_aborted') return facts.error.type;
  const status = facts.status;
  if (status !== null && status >= 400) return facts.upstreamErrorCode ?? String(status);
  return facts.error?.type ?? OTHER_ERROR_TYPE;
}

/**
 * The GenAI operation (the call upstream, as the CLIENT span sees it) failed: any 4xx or 5xx, or
 * an exchange that broke; not a client's hang-up before an answer.
 */
export function operationFailed(facts: ErrorFacts): boolean {
  return (facts.status ?? 0) >= 400 || (facts.outcome !== 'ok' && facts.outcome !== 'client_aborted');
}

/** `error.type` of the GenAI operation, undefined when it succeeded. */
export function operationErrorType(facts: ErrorFacts): string | undefined {
  return operationFailed(facts) ? errorTypeOf(facts) : undefined;
}
