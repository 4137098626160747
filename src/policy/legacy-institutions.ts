/**
 * INSTITUTIONS_FILE compatibility: its fingerprint -> institution map becomes `keys` of each
 * institution, so a deployment that adds POLICY_FILE keeps attributing the keys it mapped.
 * The policy file wins where both name a fingerprint.
 */
import type { Institution, Policy, Rules } from './types.ts';

const NO_RULES: Rules = Object.freeze({
  models: null,
  operations: null,
  maxBodyBytes: null,
  recordBodies: null,
  redact: null,
  rewrites: null,
});

export interface LegacyMerge {
  policy: Policy;
  /** Legacy fingerprints the policy file already assigns (to a virtual key or an institution); theirs stands. */
  shadowed: string[];
}

export function mergeLegacyInstitutions(policy: Policy, legacy: ReadonlyMap<string, string>): LegacyMerge {
  if (legacy.size === 0) return { policy, shadowed: [] };
  const shadowed: string[] = [];
  const added = new Map<string, string[]>();
  const keyInstitutions = new Map(policy.keyInstitutions);
  for (const [fingerprint, institution] of legacy) {
    if (policy.virtualKeys.has(fingerprint) || keyInstitutions.has(fingerprint)) {
      if (keyInstitutions.get(fingerprint) !== institution) shadowed.push(fingerprint);
      continue;
    }
    keyInstitutions.set(fingerprint, institution);
    added.set(institution, [...(added.get(institution) ?? []), fingerprint]);
  }
  const institutions = new Map(policy.institutions);
  for (const [name, fingerprints] of added) {
    const prior: Institution = institutions.get(name) ?? { name, keys: [], limits: null, rules: NO_RULES };
    institutions.set(name, Object.freeze({ ...prior, keys: Object.freeze([...prior.keys, ...fingerprints]) }));
  }
  return { policy: Object.freeze({ ...policy, institutions, keyInstitutions }), shadowed };
}
