/**
 * The shared store as admission uses it (issue 14, "MongoDB unreachable"): every call bounded by
 * `timeoutMs`, so a database that is down or hanging never holds a request longer than that; once a
 * call fails the store is taken as down for `retryMs` (admission then decides on local counts
 * without asking, quotaStoreDown: open, or refuses, closed); and whatever could not be written
 * (usage counted while down, a request given back) is kept per window document and added when the
 * store answers again.
 */
import { AppError } from '../errors.ts';
import { errorMessage, every } from '../log.ts';
import type { Usage } from './limits-counters.ts';
import type { Check, QuotaStore, Reservation } from './quota-store.ts';

export interface SharedCountsOptions {
  timeoutMs: number;
  /** How long the store is left alone after a failure before admission asks it again. */
  retryMs?: number;
  now?: () => number;
}

interface Pending {
  expireAt: Date;
  usage: Usage;
}

/** The store did not answer in time; admission then decides by quotaStoreDown (a client sees 503 quota_unavailable at most). */
export class StoreTimeoutError extends AppError {
  readonly code = 'quota_store_timeout';
  readonly status = 503;
  override readonly name = 'StoreTimeoutError';
}

export class SharedCounts {
  readonly #store: QuotaStore;
  readonly #timeoutMs: number;
  readonly #retryMs: number;
  readonly #now: () => number;
  readonly #pending = new Map<string, Pending>();
  #downUntil = 0;
  #flushTimer: NodeJS.Timeout | null = null;
  #flushing = false;
  #closed = false;

  constructor(store: QuotaStore, options: SharedCountsOptions) {
    this.#store = store;
    this.#timeoutMs = options.timeoutMs;
    this.#retryMs = options.retryMs ?? 1000;
    this.#now = options.now ?? Date.now;
  }

  /** True while admission should not ask the store (it failed less than `retryMs` ago). */
  get down(): boolean {
    return this.#now() < this.#downUntil;
  }

  /** Window documents with counts not yet added to the store. */
  get pendingWindows(): number {
    return this.#pending.size;
  }

  async reserve(id: string, expireAt: Date, checks: readonly Check[]): Promise<Reservation> {
    try {
      const reserved = await this.#bounded(this.#store.reserve(id, expireAt, checks));
      this.#up();
      return reserved;
    } catch (err) {
      this.#failed(err);
      throw err;
    }
  }

  /** Off the admission path: usage once known, a request given back; kept for later if the store fails. */
  add(id: string, expireAt: Date, usage: Usage): void {
    if (this.#closed) return;
    if (this.down || this.#pending.has(id)) return this.keep(id, expireAt, usage);
    this.#bounded(this.#store.add(id, expireAt, usage)).then(
      () => this.#up(),
      (err: unknown) => {
        this.#failed(err);
        this.keep(id, expireAt, usage);
      },
    );
  }

  /** Counted locally (the store down): added to the shared counts when it is back. */
  keep(id: string, expireAt: Date, usage: Usage): void {
    // After close (exchanges that end during shutdown) nothing can be written any more.
    if (this.#closed) return;
    const pending = this.#pending.get(id);
    if (pending === undefined) this.#pending.set(id, { expireAt, usage: { ...usage } });
    else {
      pending.usage.requests += usage.requests;
      pending.usage.tokens += usage.tokens;
      pending.usage.costUsd += usage.costUsd;
    }
    this.#scheduleFlush();
  }

  async close(): Promise<void> {
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    await this.#flush();
    this.#closed = true;
    if (this.#pending.size > 0) every('quota-store-close', 10_000, 'warn', 'the quota store is down at shutdown: counts of this process not added to the shared ones', { windows: this.#pending.size });
    await this.#store.close();
  }

  #bounded<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new StoreTimeoutError(`the quota store did not answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
    });
    // A call that times out may still be applied later: it then counts once too many, never one too few.
    work.catch(() => undefined);
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }

  #failed(err: unknown): void {
    this.#downUntil = this.#now() + this.#retryMs;
    every('quota-store', 10_000, 'warn', 'the quota store (MONGODB_URI) failed; deciding on local counts per quotaStoreDown', { error: errorMessage(err) });
  }

  #up(): void {
    this.#downUntil = 0;
    if (this.#pending.size > 0) this.#scheduleFlush(0);
  }

  #scheduleFlush(delay = this.#retryMs): void {
    if (this.#flushTimer !== null || this.#flushing) return;
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = null;
      void this.#flush().then(() => {
        if (this.#pending.size > 0) this.#scheduleFlush();
      });
    }, delay);
    this.#flushTimer.unref();
  }

  /** Each pending window in turn; stops at the first failure (the store is down again). */
  async #flush(): Promise<void> {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      for (const [id, pending] of [...this.#pending]) {
        this.#pending.delete(id);
        try {
          await this.#bounded(this.#store.add(id, pending.expireAt, pending.usage));
        } catch (err) {
          this.#failed(err);
          this.keep(id, pending.expireAt, pending.usage);
          return;
        }
      }
      this.#downUntil = 0;
    } finally {
      this.#flushing = false;
    }
  }
}
