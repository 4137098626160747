/**
 * One budget for the bytes the proxy holds on behalf of exchanges: audit capture copies,
 * STREAM_USAGE=inject request buffers and journal lines not yet written. Holders reserve
 * before they keep and release when they let go; past the limit a holder that can do without
 * (capture, inject) is refused, so memory stays bounded instead of growing with the load.
 * Plain bookkeeping: no I/O, no telemetry (the hot path may hold an account).
 */

/** What holds the bytes: each has its own count in the stats. */
export type MemoryHolder = 'capture' | 'inject' | 'journal';

/** One holder's view of the budget; what the proxy core and the capture code are handed. */
export interface MemoryAccount {
  /** Reserves `bytes` if they fit in what is left of the budget; false (nothing reserved) if not. */
  tryReserve(bytes: number): boolean;
  /**
   * Reserves `bytes` whether or not they fit: for what cannot be refused (a record's line, which
   * is never dropped while the disk writes). It still counts, so that others are refused.
   */
  reserve(bytes: number): void;
  release(bytes: number): void;
}

export interface MemoryBudgetStats {
  limitBytes: number;
  usedBytes: number;
  /** Highest `usedBytes` since start. */
  peakBytes: number;
  /** Bytes held now, per holder. */
  held: Record<MemoryHolder, number>;
  /** Reservations refused, per holder (each a body not kept or a request refused). */
  refused: Record<MemoryHolder, number>;
}

export class MemoryBudget {
  readonly #limit: number;
  #used = 0;
  #peak = 0;
  readonly #held: Record<MemoryHolder, number> = { capture: 0, inject: 0, journal: 0 };
  readonly #refused: Record<MemoryHolder, number> = { capture: 0, inject: 0, journal: 0 };
  readonly #accounts = new Map<MemoryHolder, MemoryAccount>();

  constructor(limitBytes: number) {
    this.#limit = limitBytes;
  }

  get stats(): MemoryBudgetStats {
    return { limitBytes: this.#limit, usedBytes: this.#used, peakBytes: this.#peak, held: { ...this.#held }, refused: { ...this.#refused } };
  }

  account(holder: MemoryHolder): MemoryAccount {
    let account = this.#accounts.get(holder);
    if (account === undefined) {
      account = {
        tryReserve: (bytes) => this.#tryReserve(holder, bytes),
        reserve: (bytes) => this.#add(holder, bytes),
        release: (bytes) => this.#add(holder, -bytes),
      };
      this.#accounts.set(holder, account);
    }
    return account;
  }

  #tryReserve(holder: MemoryHolder, bytes: number): boolean {
    if (this.#used + bytes > this.#limit) {
      this.#refused[holder]++;
      return false;
    }
    this.#add(holder, bytes);
    return true;
  }

  #add(holder: MemoryHolder, bytes: number): void {
    this.#used += bytes;
    this.#held[holder] += bytes;
    if (this.#used > this.#peak) this.#peak = this.#used;
  }
}

/** An account that never refuses and keeps no count: for code run without a budget (tests, tools). */
export const UNBOUNDED: MemoryAccount = {
  tryReserve: () => true,
  reserve: () => undefined,
  release: () => undefined,
};
