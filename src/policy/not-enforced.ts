/**
 * The parts of a policy file this version reads and checks but does not act on yet (issue 14's
 * limits and request rules; `prices:` are applied, exchange-cost.ts): named on /healthz and in a warning at every load, so that an
 * operator who writes a limit is never left believing it holds.
 */
import type { Limit, Policy, Rules } from './types.ts';

function hasRules(rules: Rules): boolean {
  return Object.values(rules).some((value) => value !== null);
}

function hasLimits(limits: readonly Limit[] | null): boolean {
  return limits !== null && limits.length > 0;
}

/** `limits` and `rules`, each when the file sets any. */
export function notEnforced(policy: Policy): string[] {
  const institutions = [...policy.institutions.values()];
  const out: string[] = [];
  const limits =
    hasLimits(policy.defaults.limits) ||
    institutions.some((i) => hasLimits(i.limits)) ||
    [...policy.virtualKeys.values()].some((k) => hasLimits(k.limits));
  if (limits) out.push('limits');
  if (hasRules(policy.defaults.rules) || institutions.some((i) => hasRules(i.rules))) out.push('rules');
  return out;
}
