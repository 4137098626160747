/**
 * The limiter (shared/design/policy-file.md, "Limits"), counts local to this process: at
 * admission a request is refused when any window that applies to it (its institution's limits,
 * or `defaults.limits`, and its virtual key's) is already at or over its limit; otherwise it
 * counts 1 request. Its tokens (input + output) and cost are added when its facts are known
 * (this is a consumer of the capture's facts), so requests already in flight when a token or
 * cost limit is crossed still finish: that is the overshoot, bounded by them.
 *
 * A request that admission let through but that never reached upstream (refused after, e.g. a
 * bad target) gives its request back: a request counts when it was forwarded, which is also
 * what the journal rebuild counts (limits-rebuild.ts), so both agree after a restart.
 *
 * With a shared store (MONGODB_URI, quota-store-mongo.ts) the counts that decide are the store's:
 * admission reserves the request in each limited window's document (one findOneAndUpdate per
 * window, all sent at once: one round trip), gives back those it took when another refuses, and
 * keeps the totals it got back as the local counts. When the store fails, `quotaStoreDown` says:
 * `open` decides on those local counts and keeps what it counts for the store (shared-counts.ts),
 * `closed` refuses with 503 quota_unavailable.
 */
import type { FactsConsumer } from '../capture/capture-observer.ts';
import type { ExchangeFacts } from '../capture/facts.ts';
import type { Exchange } from '../proxy/observer.ts';
import type { ApplicableLimits } from './effective.ts';
import { limitsFor } from './effective.ts';
import { LimitCounters, type Subject, type Usage } from './limits-counters.ts';
import { windowBounds } from './limits-windows.ts';
import { QuotaUnavailableError, quotaExceeded, round, type QuotaExceededError, type QuotaRefusal } from './quota-error.ts';
import type { Check } from './quota-store.ts';
import type { SharedCounts } from './shared-counts.ts';
import type { Limit, LimitKind, Policy, QuotaStoreDown, Window } from './types.ts';

export interface LimiterOptions {
  /** The clock (tests inject one); Date.now by default. */
  now?: () => number;
  /** The counts shared by every process (MONGODB_URI); null or absent: local only. */
  shared?: SharedCounts | null;
}

/** Null: admitted and counted. */
export type Admission = QuotaExceededError | QuotaUnavailableError | null;

/** One window of one subject, as /quotas and the used-ratio gauge show it. */
export interface WindowReport {
  window: Window;
  kind: LimitKind;
  limit: number;
  used: number;
  remaining: number;
  /** ISO-8601, when the window ends. */
  reset: string;
}

export interface QuotaReport {
  institutions: Record<string, WindowReport[]>;
  virtualKeys: Record<string, { institution: string; windows: WindowReport[] }>;
}

interface Counted {
  readonly subjects: readonly Subject[];
  readonly at: number;
  /** The shared window documents it was counted in (also while the store was down); null without a store. */
  readonly windows: readonly SharedWindow[] | null;
}

interface Limited {
  readonly subject: Subject;
  /** `institution acme` or `virtual key sha256:…`, as a refusal names it. */
  readonly name: string;
  readonly limits: readonly Limit[];
}

/** One window of one subject in the shared store: its document and the limits it is checked against. */
interface SharedWindow {
  readonly subject: Subject;
  readonly name: string;
  readonly window: Window;
  readonly id: string;
  readonly start: number;
  readonly end: number;
  readonly expireAt: Date;
  readonly limits: readonly Limit[];
  readonly checks: readonly Check[];
}

export class Limiter implements FactsConsumer {
  readonly counters = new LimitCounters();
  readonly #now: () => number;
  readonly #counted = new WeakMap<Exchange, Counted>();
  readonly #shared: SharedCounts | null;

  constructor(options: LimiterOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#shared = options.shared ?? null;
  }

  /** The shared store, when counts are shared. */
  get shared(): SharedCounts | null {
    return this.#shared;
  }

  /**
   * Called by admission only when some limit applies. Null: admitted, and counted as 1 request in
   * each subject that has limits; else the refusal of the window that ends last among those over.
   * A promise only when the shared store is asked.
   */
  admit(
    exchange: Exchange,
    limits: ApplicableLimits,
    institution: string | null,
    virtualKey: string | null,
    storeDown: QuotaStoreDown = 'open',
  ): Admission | Promise<Admission> {
    const now = this.#now();
    const limited: Limited[] = [];
    if (institution !== null && limits.institution.length > 0) limited.push({ subject: `institution:${institution}`, name: `institution ${institution}`, limits: limits.institution });
    if (virtualKey !== null && limits.virtualKey.length > 0) limited.push({ subject: `virtualKey:${virtualKey}`, name: `virtual key ${virtualKey}`, limits: limits.virtualKey });
    const shared = this.#shared;
    if (shared === null) return this.#admitLocal(exchange, limited, now, null);
    if (!shared.down) return this.#admitShared(exchange, limited, now, storeDown, shared);
    if (storeDown === 'closed') return unavailable();
    return this.#admitLocal(exchange, limited, now, sharedWindows(limited, now));
  }

  /** On this process's counts; with `windows` (the store down, quotaStoreDown: open), kept for the store. */
  #admitLocal(exchange: Exchange, limited: readonly Limited[], now: number, windows: readonly SharedWindow[] | null): QuotaExceededError | null {
    let over: QuotaRefusal | null = null;
    for (const l of limited) over = this.#over(l.subject, l.name, l.limits, now, over);
    if (over !== null) return quotaExceeded(over, now);
    for (const l of limited) this.counters.add(l.subject, now, ONE_REQUEST);
    for (const w of windows ?? []) this.#shared?.keep(w.id, w.expireAt, ONE_REQUEST);
    if (limited.length > 0) this.#counted.set(exchange, { subjects: limited.map((l) => l.subject), at: now, windows });
    return null;
  }

  async #admitShared(exchange: Exchange, limited: readonly Limited[], now: number, storeDown: QuotaStoreDown, shared: SharedCounts): Promise<Admission> {
    const windows = sharedWindows(limited, now);
    // All windows at once: one round trip whatever their number (each is its own document).
    const results = await Promise.all(windows.map((w) => shared.reserve(w.id, w.expireAt, w.checks).catch(() => null)));
    const taken = windows.filter((_, i) => results[i]?.admitted === true);
    if (exchange.endHr !== null) {
      // The client left while the store answered: its facts have come and gone, so the request
      // it reserved is given back here (it never goes upstream).
      for (const w of taken) shared.add(w.id, w.expireAt, GIVE_BACK);
      return null;
    }
    if (results.includes(null)) {
      // The store failed on some window: nothing of this request stays in it.
      for (const w of taken) shared.add(w.id, w.expireAt, GIVE_BACK);
      return storeDown === 'closed' ? unavailable() : this.#admitLocal(exchange, limited, this.#now(), windows);
    }
    let over: QuotaRefusal | null = null;
    for (const [i, w] of windows.entries()) {
      const result = results[i];
      if (result === null || result === undefined) continue;
      if (result.counts !== null) this.#mirror(w, result.counts, now);
      if (result.admitted) continue;
      const counts = result.counts;
      // The limit reached; when the totals are not known, the window's first (a window has at least one).
      const limit = w.limits.find((l) => counts === null || counts[l.kind] >= l.limit) ?? w.limits.at(0);
      if (limit === undefined) continue;
      if (over === null || w.end > over.reset) {
        over = { subject: w.name, window: w.window, kind: limit.kind, limit: limit.limit, used: counts?.[limit.kind] ?? limit.limit, reset: w.end };
      }
    }
    if (over !== null) {
      for (const w of taken) {
        shared.add(w.id, w.expireAt, GIVE_BACK);
        this.counters.slot(w.subject, w.window, now).requests -= 1;
      }
      return quotaExceeded(over, now);
    }
    this.#counted.set(exchange, { subjects: limited.map((l) => l.subject), at: now, windows });
    return null;
  }

  /** The store's totals become this process's counts: what `open` decides on if the store goes. */
  #mirror(w: SharedWindow, counts: Usage, now: number): void {
    const slot = this.counters.slot(w.subject, w.window, now);
    if (slot.start !== w.start) return;
    slot.requests = counts.requests;
    slot.tokens = counts.tokens;
    slot.costUsd = counts.costUsd;
  }

  #over(subject: Subject, name: string, limits: readonly Limit[], now: number, worst: QuotaRefusal | null): QuotaRefusal | null {
    for (const limit of limits) {
      const slot = this.counters.slot(subject, limit.window, now);
      const used = slot[limit.kind];
      if (used < limit.limit) continue;
      if (worst === null || slot.end > worst.reset) worst = { subject: name, window: limit.window, kind: limit.kind, limit: limit.limit, used, reset: slot.end };
    }
    return worst;
  }

  /** The exchange was counted at admission: its usage will count too (runtime.ts asks upstream for a stream's). */
  counts(exchange: Exchange): boolean {
    return this.#counted.has(exchange);
  }

  /** Tokens and cost, once the exchange's usage is known; the request back if it never went upstream. */
  facts(exchange: Exchange, facts: ExchangeFacts): void {
    const counted = this.#counted.get(exchange);
    if (counted === undefined) return;
    this.#counted.delete(exchange);
    const usage = { requests: exchange.origin === null ? -1 : 0, tokens: tokensOf(facts), costUsd: facts.costUsd ?? 0 };
    if (usage.requests === 0 && usage.tokens === 0 && usage.costUsd === 0) return;
    const now = this.#now();
    for (const subject of counted.subjects) this.counters.add(subject, counted.at, usage, now);
    // Off the admission path: an updateOne per window, or kept for later while the store is down.
    for (const w of counted.windows ?? []) if (now < w.end) this.#shared?.add(w.id, w.expireAt, usage);
  }

  /** Each institution's and virtual key's windows under `policy` (only those with limits). */
  report(policy: Policy): QuotaReport {
    const now = this.#now();
    const names = new Set(policy.institutions.keys());
    for (const subject of this.counters.subjects()) if (subject.startsWith('institution:')) names.add(subject.slice('institution:'.length));
    const institutions: QuotaReport['institutions'] = {};
    for (const name of [...names].sort()) {
      const limits = limitsFor(policy, name, null).institution;
      if (limits.length > 0) institutions[name] = this.#windows(`institution:${name}`, limits, now);
    }
    const virtualKeys: QuotaReport['virtualKeys'] = {};
    for (const key of policy.virtualKeys.values()) {
      if (key.limits.length > 0) virtualKeys[key.fingerprint] = { institution: key.institution, windows: this.#windows(`virtualKey:${key.fingerprint}`, key.limits, now) };
    }
    return { institutions, virtualKeys };
  }

  #windows(subject: Subject, limits: readonly Limit[], now: number): WindowReport[] {
    return limits.map((limit) => {
      const slot = this.counters.slot(subject, limit.window, now);
      const used = round(slot[limit.kind]);
      return { window: limit.window, kind: limit.kind, limit: limit.limit, used, remaining: Math.max(0, round(limit.limit - used)), reset: new Date(slot.end).toISOString() };
    });
  }
}

const ONE_REQUEST = Object.freeze({ requests: 1, tokens: 0, costUsd: 0 });
const GIVE_BACK = Object.freeze({ requests: -1, tokens: 0, costUsd: 0 });

function unavailable(): QuotaUnavailableError {
  return new QuotaUnavailableError('the quota store is unreachable and quotaStoreDown is closed: requests with limits are refused until it is back');
}

/** Window-start keys of the store's documents, in UTC: `2026-12-07T04:05`, `…T04`, `2026-12-07`, `2026-12`. */
const KEY_LENGTH: Record<Window, number> = { minute: 16, hour: 13, day: 10, month: 7 };

/** Each subject's limited windows, one document each, with every limit of that window as a check. */
function sharedWindows(limited: readonly Limited[], now: number): SharedWindow[] {
  const out: SharedWindow[] = [];
  for (const l of limited) {
    const byWindow = new Map<Window, Limit[]>();
    for (const limit of l.limits) byWindow.set(limit.window, [...(byWindow.get(limit.window) ?? []), limit]);
    for (const [window, limits] of byWindow) {
      const { start, end } = windowBounds(window, now);
      const id = `${l.subject}|${window}|${new Date(start).toISOString().slice(0, KEY_LENGTH[window])}`;
      out.push({ subject: l.subject, name: l.name, window, id, start, end, expireAt: new Date(end), limits, checks: limits.map((x) => ({ kind: x.kind, limit: x.limit })) });
    }
  }
  return out;
}

function tokensOf(facts: Pick<ExchangeFacts, 'usage'>): number {
  return (facts.usage?.inputTokens ?? 0) + (facts.usage?.outputTokens ?? 0);
}
