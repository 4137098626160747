// The capture's `costOf` (capture/pricing.ts) at a price table: the exchange's usage and the
// request and response facts that price it (cost-facts.ts), through cost.ts's arithmetic.
import type { PricingInput } from '../capture/pricing.ts';
import { costFactsFromRequest, costFactsFromResponse } from './cost-facts.ts';
import { costUsd, isPricedOperation } from './cost.ts';
import { mergePrices, shippedPrices, type PriceTable } from './prices.ts';
import type { Policy } from './types.ts';

/**
 * USD for one exchange, null when it cannot be priced. An error answer (4xx, 5xx) of a billed
 * operation is 0: it carries no usage, and OpenAI bills the tokens a response reports.
 */
export function exchangeCost(input: PricingInput, table: PriceTable): number | null {
  const { operation } = input;
  if (input.upstreamStatus !== null && input.upstreamStatus >= 400) return isPricedOperation(operation) ? 0 : null;
  const facts = { ...costFactsFromRequest(operation, input.request), ...costFactsFromResponse(operation, input.response) };
  return costUsd(operation, input.model, input.usage, facts, table);
}

const tables = new WeakMap<Policy, PriceTable>();

/** The shipped table with the policy's `prices:` added (once per policy loaded); the shipped one without a policy. */
export function priceTableOf(policy: Policy | null): PriceTable {
  if (policy === null || policy.prices.size === 0) return shippedPrices();
  let table = tables.get(policy);
  if (table === undefined) {
    table = mergePrices(shippedPrices(), policy.prices);
    tables.set(policy, table);
  }
  return table;
}
