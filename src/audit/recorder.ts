/**
 * The capture observer: taps each exchange's bytes, and once it has ended builds its audit
 * record and hands it to the sinks (journal, metrics, tracing). A sink that fails is counted
 * and logged; the others still get the record. Records are built only as fast as the journal
 * writes them (backpressure); what waits meanwhile is bounded by the memory budget.
 */
import type { MemoryAccount } from '../memory-budget.ts';
import type { ResponseHeaders } from '../proxy/headers.ts';
import type { Exchange, ExchangeObserver, ExchangeTap } from '../proxy/observer.ts';
import { buildRecord } from './build-record.ts';
import { ExchangeCapture } from './exchange-capture.ts';
import type { FsyncPolicy } from './journal-writer.ts';
import { apiKeyOf, identify, type HeaderRedactor, type InstitutionResolver } from './identity.ts';
import type { AuditRecord } from './record.ts';

export type RecordSink = (record: AuditRecord, exchange: Exchange) => void;

/** A sink that keeps records only as fast as it can write them (the journal). */
export interface SinkBackpressure {
  /** More records now would only pile up in memory: wait for `drained()`. */
  readonly needsDrain: boolean;
  /** Resolves once records are wanted again (or would be dropped anyway: waiting would not help). */
  drained(): Promise<void>;
}

export interface RecorderOptions {
  maxBodyBytes: number;
  /** How long ended exchanges wait to have their records built together; 0 builds each at once. */
  batchMs: number;
  redactor: HeaderRedactor;
  /**
   * Without POLICY_FILE, how the institution is found (header, then INSTITUTIONS_FILE); null when
   * admission decides it (exchange.identity) and an exchange it never saw has none.
   */
  institutions: InstitutionResolver | null;
  traceOf: (exchange: Exchange) => { traceId: string; spanId: string } | null;
  usageInjected: (exchange: Exchange) => boolean;
  sinks: RecordSink[];
  onFailure: (error: unknown, stage: string) => void;
  /** Where body copies are reserved until their record has been handed to the sinks. */
  memory?: MemoryAccount;
  /** Records are built only while this sink has room for them. */
  backpressure?: SinkBackpressure;
}

export class Recorder implements ExchangeObserver {
  readonly #options: RecorderOptions;
  readonly #backlog: Backlog;

  constructor(options: RecorderOptions) {
    this.#options = options;
    this.#backlog = new Backlog(options.batchMs, (exchange, capture) => this.#record(exchange, capture), options.backpressure ?? null);
  }

  start(exchange: Exchange): ExchangeTap {
    const capture = new ExchangeCapture(exchange.req, this.#options.maxBodyBytes, this.#options.memory);
    return new RecordingTap(exchange, capture, this.#backlog);
  }

  /**
   * Builds the records of every exchange that has ended, resolves once the sinks have them, and
   * from now on builds each record as its exchange ends (the process is stopping).
   */
  close(): Promise<void> {
    return this.#backlog.close();
  }

  async #record(exchange: Exchange, capture: ExchangeCapture): Promise<void> {
    try {
      await this.#emit(exchange, capture);
    } catch (err) {
      this.#options.onFailure(err, 'record');
    } finally {
      capture.release();
    }
  }

  async #emit(exchange: Exchange, capture: ExchangeCapture): Promise<void> {
    const options = this.#options;
    const identity = exchange.identity;
    const apiKey = identity?.apiKey ?? identify(apiKeyOf(exchange.req.headers));
    const who = identity ?? options.institutions?.resolveWithSource(exchange.req.headers, apiKey) ?? null;
    const record = await buildRecord({
      exchange,
      capture,
      redactor: options.redactor,
      apiKey,
      institution: who?.institution ?? null,
      institutionSource: who?.source ?? null,
      trace: options.traceOf(exchange),
      usageInjected: options.usageInjected(exchange),
    });
    for (const sink of options.sinks) {
      try {
        sink(record, exchange);
      } catch (err) {
        options.onFailure(err, 'sink');
      }
    }
  }
}

/** How long ended exchanges wait to have their records built together. */
export const RECORD_BATCH_MS = 5;

/** No wait when the journal fsyncs every record (`always`): each is to be durable as soon as it can be. */
export function recordBatchMs(fsync: FsyncPolicy | null): number {
  return fsync === 'always' ? 0 : RECORD_BATCH_MS;
}

/** A backlog this long is built at once, whatever its age. */
const RECORD_BATCH_MAX = 256;

/**
 * Records being built at once, at most: the sink's backpressure is seen only once a record
 * reaches it, so this bounds how far past its mark a burst of large records can take it.
 */
const MAX_BUILDING = 8;

/**
 * Ended exchanges whose records are still to be built. Built one at a time, as each exchange
 * ends, a record costs the event loop a few hundred microseconds on a cold cache, right between
 * a client and its next request; built in batches, the code and data stay hot and the cost falls
 * by half. The wait is far inside what a crash may lose anyway (the journal's fsync interval);
 * with fsync `always` there is none.
 */
class Backlog {
  #delayMs: number;
  readonly #build: (exchange: Exchange, capture: ExchangeCapture) => Promise<void>;
  readonly #backpressure: SinkBackpressure | null;
  /** Ended exchanges not yet being built, from `#next` on. */
  #ended: ([Exchange, ExchangeCapture] | undefined)[] = [];
  #next = 0;
  #timer: NodeJS.Timeout | null = null;
  #due = false;
  #waitingForSink = false;
  // A count, not a set of the builds' promises: tracking each one cost a `finally` (two more
  // promises and three closures) and a set entry per record, ~1.4 KB of garbage.
  #building = 0;
  #whenIdle: (() => void)[] = [];

  constructor(
    delayMs: number,
    build: (exchange: Exchange, capture: ExchangeCapture) => Promise<void>,
    backpressure: SinkBackpressure | null,
  ) {
    this.#delayMs = delayMs;
    this.#build = build;
    this.#backpressure = backpressure;
  }

  add(exchange: Exchange, capture: ExchangeCapture): void {
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

/**
 * Feeds one exchange's capture, then queues it for its record when the exchange ends. Methods, not
 * an object of arrow functions: under tsx each named arrow function costs an
 * Object.defineProperty to create, and this is created for every exchange.
 */
class RecordingTap implements ExchangeTap {
  readonly #exchange: Exchange;
  readonly #capture: ExchangeCapture;
  readonly #backlog: Backlog;

  constructor(exchange: Exchange, capture: ExchangeCapture, backlog: Backlog) {
    this.#exchange = exchange;
    this.#capture = capture;
    this.#backlog = backlog;
  }

  requestChunk(chunk: Buffer): void {
    this.#capture.request.push(chunk);
  }

  responseHead(_status: number, headers: ResponseHeaders): void {
    this.#capture.responseHead(headers);
  }

  responseChunk(chunk: Buffer): void {
    this.#capture.responseChunk(chunk);
  }

  message(direction: 'client' | 'upstream', data: Buffer): void {
    this.#capture.message(direction, data);
  }

  end(): void {
    this.#capture.responseEnd();
    this.#backlog.add(this.#exchange, this.#capture);
  }
}
