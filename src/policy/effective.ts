/**
 * What applies to one request under a policy: the limits to count it against and the rules to
 * check it by. An institution's own limits replace `defaults.limits`; its own rule fields
 * replace the same fields of `defaults`, field by field (shared/design/policy-file.md, "Rules").
 */
import type { Limit, Policy, Rules, VirtualKey } from './types.ts';

export interface ApplicableLimits {
  /** The institution's, or the defaults when it has none of its own; none without an institution. */
  readonly institution: readonly Limit[];
  /** The virtual key's own, counted on top of the institution's. */
  readonly virtualKey: readonly Limit[];
}

const NONE: readonly Limit[] = Object.freeze([]);

export function limitsFor(policy: Policy, institution: string | null, virtualKey: VirtualKey | null): ApplicableLimits {
  const own = institution === null ? NONE : (policy.institutions.get(institution)?.limits ?? policy.defaults.limits);
  return { institution: own, virtualKey: virtualKey?.limits ?? NONE };
}

/** A request without an institution is held to `defaults`. */
export function rulesFor(policy: Policy, institution: string | null): Rules {
  const defaults = policy.defaults.rules;
  const own = institution === null ? undefined : policy.institutions.get(institution)?.rules;
  if (own === undefined) return defaults;
  return {
    models: own.models ?? defaults.models,
    operations: own.operations ?? defaults.operations,
    maxBodyBytes: own.maxBodyBytes ?? defaults.maxBodyBytes,
    recordBodies: own.recordBodies ?? defaults.recordBodies,
    redact: own.redact ?? defaults.redact,
    rewrites: own.rewrites ?? defaults.rewrites,
  };
}
