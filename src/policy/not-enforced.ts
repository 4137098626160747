/**
 * The parts of a policy file this version reads and checks but does not act on yet (issue 14's
 * request rules; `prices:` are applied, exchange-cost.ts, and limits, limits.ts): named on /healthz
 * and in a warning at every load, so that an operator who writes a rule is never left believing it holds.
 */
import type { Policy, Rules } from './types.ts';

function hasRules(rules: Rules): boolean {
  return Object.values(rules).some((value) => value !== null);
}

/** `rules`, when the file sets any. */
export function notEnforced(policy: Policy): string[] {
  const institutions = [...policy.institutions.values()];
  const out: string[] = [];
  if (hasRules(policy.defaults.rules) || institutions.some((i) => hasRules(i.rules))) out.push('rules');
  return out;
}
