/**
 * Ended exchanges wait here, briefly, to have their facts computed and handed on together, only as
 * fast as the slowest consumer that asks for it (the journal) takes them.
 */
import type { Exchange } from '../proxy/observer.ts';
import type { ExchangeCapture } from './exchange-capture.ts';

/** A consumer that keeps what it is given only as fast as it can write it (the journal). */
export interface Backpressure {
  /** More now would only pile up in memory: wait for `drained()`. */
  readonly needsDrain: boolean;
  /** Resolves once more is wanted again (or would be dropped anyway: waiting would not help). */
  drained(): Promise<void>;
}

/** How long ended exchanges wait to have their records built together. */
export const RECORD_BATCH_MS = 5;


/** A backlog this long is built at once, whatever its age. */
const RECORD_BATCH_MAX = 256;

/**
 * Records being built at once, at most: the sink's backpressure is seen only once a record
 * reaches it, so this bounds how far past its mark a burst of large records can take it.
 */
const MAX_BUILDING = 8;

/**
 * Ended exchanges whose facts (and records) are still to be built. Built one at a time, as each
 * exchange ends, each record is built on a cold cache, right between a client and its next
 * request; built in batches, the code and data stay hot (bench/README.md has the figures). The wait is far inside what a crash may lose anyway (the journal's fsync interval);
 * with fsync `always` there is none.
 */
export class Backlog {
  #delayMs: number;
  readonly #build: (exchange: Exchange, capture: ExchangeCapture | null) => Promise<void>;
  readonly #backpressure: Backpressure | null;
  /** Ended exchanges not yet being built, from `#next` on. */
  #ended: ([Exchange, ExchangeCapture | null] | undefined)[] = [];
  #next = 0;
  #timer: NodeJS.Timeout | null = null;
  #due = false;
  #waitingForSink = false;
  // A count, not a set of the builds' promises: tracking each one cost a `finally` (two more
  // promises and three closures) and a set entry per record.
  #building = 0;
  #whenIdle: (() => void)[] = [];

  constructor(
    delayMs: number,
    build: (exchange: Exchange, capture: ExchangeCapture | null) => Promise<void>,
    backpressure: Backpressure | null,
  ) {
    this.#delayMs = delayMs;
    this.#build = build;
    this.#backpressure = backpressure;
  }

  add(exchange: Exchange, capture: ExchangeCapture | null): void {
    this.#ended.push([exchange, capture]);
    if (this.#delayMs <= 0 || this.#ended.length - this.#next >= RECORD_BATCH_MAX) this.#drain();
    else if (!this.#due) this.#timer ??= setTimeout(() => this.#drain(), this.#delayMs).unref();
  }

  /** Resolves once every record is built; from now on each is built as its exchange ends. */
  async close(): Promise<void> {
    this.#delayMs = 0;
    this.#drain();
    if (this.#building > 0 || this.#next < this.#ended.length) await new Promise<void>((resolve) => this.#whenIdle.push(resolve));
  }

  /** What has ended so far is due: built now, or as soon as the sink and MAX_BUILDING allow. */
  #drain(): void {
    clearTimeout(this.#timer ?? undefined);
    this.#timer = null;
    this.#due = true;
    this.#pump();
  }

  #pump(): void {
    const ended = this.#ended;
    while (this.#next < ended.length && this.#building < MAX_BUILDING && !this.#waitingForSink) {
      if (this.#backpressure?.needsDrain === true) {
        this.#waitingForSink = true;
        void this.#backpressure.drained().then(this.#sinkDrained);
        return;
      }
      const entry = ended[this.#next];
      // Let go of it here: a long backlog waiting for the sink must not hold what it has built.
      ended[this.#next++] = undefined;
      if (entry === undefined) continue;
      const [exchange, capture] = entry;
      this.#building++;
      void this.#build(exchange, capture).then(this.#built, this.#built);
    }
    if (this.#next < ended.length) return;
    this.#ended = [];
    this.#next = 0;
    this.#due = false;
    if (this.#building === 0) this.#idle();
  }

  readonly #sinkDrained = (): void => {
    this.#waitingForSink = false;
    this.#pump();
  };

  readonly #built = (): void => {
    this.#building--;
    if (this.#next < this.#ended.length && this.#due) this.#pump();
    else if (this.#building === 0 && this.#next >= this.#ended.length) this.#idle();
  };

  #idle(): void {
    const idle = this.#whenIdle;
    this.#whenIdle = [];
    for (const resolve of idle) resolve();
  }
}

