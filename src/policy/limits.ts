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
 */
import type { FactsConsumer } from '../capture/capture-observer.ts';
import type { ExchangeFacts } from '../capture/facts.ts';
import type { Exchange } from '../proxy/observer.ts';
import type { ApplicableLimits } from './effective.ts';
import { limitsFor } from './effective.ts';
import { LimitCounters, type Subject } from './limits-counters.ts';
import { quotaExceeded, round, type QuotaExceededError, type QuotaRefusal } from './quota-error.ts';
import type { Limit, LimitKind, Policy, Window } from './types.ts';

export interface LimiterOptions {
  /** The clock (tests inject one); Date.now by default. */
  now?: () => number;
}

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
}

export class Limiter implements FactsConsumer {
  readonly counters = new LimitCounters();
  readonly #now: () => number;
  readonly #counted = new WeakMap<Exchange, Counted>();

  constructor(options: LimiterOptions = {}) {
    this.#now = options.now ?? Date.now;
  }

  /**
   * Called by admission only when some limit applies. Null: admitted, and counted as 1 request in
   * each subject that has limits; else the refusal of the window that ends last among those over.
   */
  admit(exchange: Exchange, limits: ApplicableLimits, institution: string | null, virtualKey: string | null): QuotaExceededError | null {
    const now = this.#now();
    let over: QuotaRefusal | null = null;
    const subjects: Subject[] = [];
    if (institution !== null && limits.institution.length > 0) {
      const subject: Subject = `institution:${institution}`;
      over = this.#over(subject, `institution ${institution}`, limits.institution, now, over);
      subjects.push(subject);
    }
    if (virtualKey !== null && limits.virtualKey.length > 0) {
      const subject: Subject = `virtualKey:${virtualKey}`;
      over = this.#over(subject, `virtual key ${virtualKey}`, limits.virtualKey, now, over);
      subjects.push(subject);
    }
    if (over !== null) return quotaExceeded(over, now);
    for (const subject of subjects) this.counters.add(subject, now, ONE_REQUEST);
    if (subjects.length > 0) this.#counted.set(exchange, { subjects, at: now });
    return null;
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

function tokensOf(facts: Pick<ExchangeFacts, 'usage'>): number {
  return (facts.usage?.inputTokens ?? 0) + (facts.usage?.outputTokens ?? 0);
}
