/**
 * The policy, as the proxy holds it once the file is read and checked: the contract's field
 * names (shared/design/policy-file.md, version 1) with the shorthand forms spelt out.
 * Every Policy is frozen; a reload builds a new one, so a request keeps the one it started with.
 */
import type { AddressSet } from './address-set.ts';
import type { ModelPrice } from './prices.ts';
import type { UpstreamKey } from './upstream-key.ts';

export const WINDOWS = ['minute', 'hour', 'day', 'month'] as const;
export type Window = (typeof WINDOWS)[number];

export const LIMIT_KINDS = ['requests', 'tokens', 'costUsd'] as const;
export type LimitKind = (typeof LIMIT_KINDS)[number];

/** `{ window: day, tokens: 2000000 }` becomes `{ window: 'day', kind: 'tokens', limit: 2000000 }`. */
export interface Limit {
  readonly window: Window;
  readonly kind: LimitKind;
  readonly limit: number;
}

export type Redaction = { readonly kind: 'builtin'; readonly name: string } | { readonly kind: 'regex'; readonly source: string };

export type Rewrite =
  | { readonly kind: 'model'; readonly from: string; readonly to: string; readonly operations: readonly string[] | null }
  | {
      readonly kind: 'param';
      readonly from: string;
      readonly to: string;
      readonly models: readonly string[] | null;
      readonly operations: readonly string[] | null;
    }
  | { readonly kind: 'path'; readonly from: string; readonly to: string }
  | {
      readonly kind: 'header';
      readonly name: string;
      readonly value: string;
      readonly models: readonly string[] | null;
      readonly operations: readonly string[] | null;
    };

/** Request rules; null means "not set here" (an institution's unset field falls back to `defaults`). */
export interface Rules {
  /** Allowed model patterns (`*` matches any run of characters). */
  readonly models: readonly string[] | null;
  readonly operations: readonly string[] | null;
  readonly maxBodyBytes: number | null;
  readonly recordBodies: 'full' | 'none' | null;
  readonly redact: readonly Redaction[] | null;
  readonly rewrites: readonly Rewrite[] | null;
}

export interface Institution {
  readonly name: string;
  /** Fingerprints of client-held OpenAI keys that are this institution's. */
  readonly keys: readonly string[];
  /** Null when the file gives none: `defaults.limits` apply. */
  readonly limits: readonly Limit[] | null;
  readonly rules: Rules;
}

export interface VirtualKey {
  readonly fingerprint: string;
  readonly institution: string;
  /** Null only for a disabled key, whose secret need not exist any more. */
  readonly upstreamKey: UpstreamKey | null;
  /** On top of the institution's. */
  readonly limits: readonly Limit[];
  readonly disabled: boolean;
}

export interface InstitutionHeader {
  /** Lower-case. */
  readonly name: string;
  readonly trustedFrom: AddressSet;
}


export interface PolicySource {
  readonly path: string;
  /** Of the file's bytes, hex. */
  readonly sha256: string;
  readonly loadedAt: Date;
}

export interface Policy {
  readonly version: 1;
  readonly virtualKeys: ReadonlyMap<string, VirtualKey>;
  readonly institutions: ReadonlyMap<string, Institution>;
  /** Fingerprint of a client-held key -> institution name (from every institution's `keys`). */
  readonly keyInstitutions: ReadonlyMap<string, string>;
  readonly institutionHeader: InstitutionHeader;
  readonly requireInstitution: boolean;
  readonly defaults: { readonly limits: readonly Limit[]; readonly rules: Rules };
  readonly quotaStoreDown: QuotaStoreDown;
  /** The file's `prices:`, by lower-cased model name, in prices.ts's vocabulary (merged over the shipped table by exchange-cost.ts). */
  readonly prices: ReadonlyMap<string, ModelPrice>;
  readonly source: PolicySource;
}

/** What admission does while the shared quota store (MONGODB_URI) does not answer. */
export type QuotaStoreDown = 'open' | 'closed';
