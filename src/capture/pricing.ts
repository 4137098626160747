// The facts' cost: computed once per exchange by the capture observer, after the exchange has
// ended (never on the response path), for every consumer (the audit record, metrics, spans).
// The price table is not the capture layer's business: the arithmetic arrives as `costOf`
// (runtime.ts binds it to the shipped table and the policy's `prices:`).
// Where a stream's usage cannot be known (no `stream_options.include_usage`, or the client
// left before the usage chunk), it is estimated from the captured request and the output
// text (token-estimate.ts), marked `usageEstimated`, and priced like reported usage
// (shared/design/policy-file.md, "Records").
import type { Exchange } from '../proxy/observer.ts';
import type { CapturedExchange, ExchangeFacts } from './facts.ts';
import type { ExchangeCapture } from './exchange-capture.ts';
import { estimateUsage } from './token-estimate.ts';

/** What prices an exchange besides its usage: the request and the response as JSON. */
export interface PricingInput {
  exchange: Exchange;
  operation: string;
  /** The response's model, else the request's. */
  model: string | null;
  /** What upstream answered (an error status is not billed); null if it never answered. */
  upstreamStatus: number | null;
  usage: ExchangeFacts['usage'];
  /** The parsed JSON request, else the members the capture scanned (a multipart form's fields). */
  request: unknown;
  /** The parsed JSON response, else the members the capture scanned; null for a stream. */
  response: unknown;
}

/** USD for one exchange, or null when its model or operation is not priced. */
export type CostOf = (input: PricingInput) => number | null;

// Operations whose streams report usage only on request, or only at their end.
const ESTIMATED_STREAMS = new Set(['chat.completions', 'responses', 'completions']);

/**
 * Sets `facts.costUsd` (and, for a stream whose usage is unknown, an estimated `facts.usage`
 * with `usageEstimated`). Returns a promise only when the tokenizer is needed (it loads on
 * first use): every other exchange is priced synchronously.
 */
export function priceFacts(exchange: Exchange, facts: ExchangeFacts, capture: ExchangeCapture, captured: CapturedExchange, costOf: CostOf): Promise<void> | null {
  const operation = facts.operation;
  if (operation === null) return null;
  const { request } = captured;
  if (needsEstimate(facts) && request.bodyEncoding === 'json') {
    const outputText = capture.stream?.summary().outputText ?? null;
    return estimateUsage(operation, facts.responseModel ?? facts.requestModel, request.body, outputText).then((estimated) => {
      if (estimated !== null) {
        facts.usage = estimated;
        facts.usageEstimated = true;
      }
      price(exchange, operation, facts, capture, captured, costOf);
    });
  }
  price(exchange, operation, facts, capture, captured, costOf);
  return null;
}

function price(exchange: Exchange, operation: string, facts: ExchangeFacts, capture: ExchangeCapture, captured: CapturedExchange, costOf: CostOf): void {
  const { request, response } = captured;
  const requestJson = request.bodyEncoding === 'json' ? request.body : capture.request.fields;
  const responseJson = capture.stream !== null ? null : response?.bodyEncoding === 'json' ? response.body : (capture.response?.fields ?? null);
  const model = facts.responseModel ?? facts.requestModel;
  facts.costUsd = costOf({ exchange, operation, model, upstreamStatus: facts.upstreamStatus, usage: facts.usage, request: requestJson, response: responseJson });
}

/** A streamed answer that came (at least partly) with no usage: upstream answered 2xx and said none. */
function needsEstimate(facts: ExchangeFacts): boolean {
  if (facts.usage !== null || !facts.eventStream || facts.operation === null || !ESTIMATED_STREAMS.has(facts.operation)) return false;
  return facts.upstreamStatus !== null && facts.upstreamStatus >= 200 && facts.upstreamStatus < 300;
}
