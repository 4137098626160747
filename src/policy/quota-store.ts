/**
 * Counters shared by every proxy process (issue 14, "Across replicas"): one document per subject
 * and window start holding that window's requests, tokens and cost. A store answers two things:
 * reserve one request in a window unless one of its limits is already reached (atomically, so N
 * processes admit exactly `limit`), and add usage once it is known. quota-store-mongo.ts is the
 * MongoDB one; shared-counts.ts bounds each call in time and keeps what could not be written.
 */
import type { Usage } from './limits-counters.ts';
import type { LimitKind } from './types.ts';

export interface Check {
  readonly kind: LimitKind;
  readonly limit: number;
}

export type Reservation =
  /** Counted: the window's totals after this request. */
  | { readonly admitted: true; readonly counts: Usage }
  /** Not counted: a limit is reached; the totals when known. */
  | { readonly admitted: false; readonly counts: Usage | null };

export interface QuotaStore {
  /** One request into window document `id` when every `checks` is still under its limit. */
  reserve(id: string, expireAt: Date, checks: readonly Check[]): Promise<Reservation>;
  /** Adds `usage` (a request given back is -1) to window document `id`, creating it if need be. */
  add(id: string, expireAt: Date, usage: Usage): Promise<void>;
  close(): Promise<void>;
}
