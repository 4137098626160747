/**
 * The capture observer: taps each exchange's bytes, and once it has ended builds its audit
 * record and hands it to the sinks (journal, metrics, tracing). A sink that fails is counted
 * and logged; the others still get the record.
 */
import type { ResponseHeaders } from '../proxy/headers.ts';
import type { Exchange, ExchangeObserver, ExchangeTap } from '../proxy/observer.ts';
import { buildRecord } from './build-record.ts';
import { ExchangeCapture } from './exchange-capture.ts';
import type { FsyncPolicy } from './journal-writer.ts';
import { apiKeyOf, identify, type HeaderRedactor, type InstitutionResolver } from './identity.ts';
import type { AuditRecord } from './record.ts';

export type RecordSink = (record: AuditRecord, exchange: Exchange) => void;

export interface RecorderOptions {
  maxBodyBytes: number;
  /** How long ended exchanges wait to have their records built together; 0 builds each at once. */
  batchMs: number;
  redactor: HeaderRedactor;
  institutions: InstitutionResolver;
  traceOf: (exchange: Exchange) => { traceId: string; spanId: string } | null;
  usageInjected: (exchange: Exchange) => boolean;
  sinks: RecordSink[];
  onFailure: (error: unknown, stage: string) => void;
}

export class Recorder implements ExchangeObserver {
  readonly #options: RecorderOptions;
  readonly #backlog: Backlog;

  constructor(options: RecorderOptions) {
    this.#options = options;
    this.#backlog = new Backlog(options.batchMs, (exchange, capture) => this.#record(exchange, capture));
  }

  start(exchange: Exchange): ExchangeTap {
    return new RecordingTap(exchange, new ExchangeCapture(exchange.req, this.#options.maxBodyBytes), this.#backlog);
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
    }
  }

  async #emit(exchange: Exchange, capture: ExchangeCapture): Promise<void> {
    const options = this.#options;
    const apiKey = identify(apiKeyOf(exchange.req.headers));
    const record = await buildRecord({
      exchange,
      capture,
      redactor: options.redactor,
      apiKey,
      institution: options.institutions.resolve(exchange.req.headers, apiKey),
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
 * Ended exchanges whose records are still to be built. Built one at a time, as each exchange
 * ends, a record costs the event loop a few hundred microseconds on a cold cache, right between
 * a client and its next request; built in batches, the code and data stay hot and the cost falls
 * by half. The wait is far inside what a crash may lose anyway (the journal's fsync interval);
 * with fsync `always` there is none.
 */
class Backlog {
  #delayMs: number;
  readonly #build: (exchange: Exchange, capture: ExchangeCapture) => Promise<void>;
  #ended: [Exchange, ExchangeCapture][] = [];
  #timer: NodeJS.Timeout | null = null;
  // A count, not a set of the builds' promises: tracking each one cost a `finally` (two more
  // promises and three closures) and a set entry per record, ~1.4 KB of garbage.
  #building = 0;
  #whenIdle: (() => void)[] = [];

  constructor(delayMs: number, build: (exchange: Exchange, capture: ExchangeCapture) => Promise<void>) {
    this.#delayMs = delayMs;
    this.#build = build;
  }

  add(exchange: Exchange, capture: ExchangeCapture): void {
    this.#ended.push([exchange, capture]);
    if (this.#delayMs <= 0 || this.#ended.length >= RECORD_BATCH_MAX) this.#drain();
    else this.#timer ??= setTimeout(() => this.#drain(), this.#delayMs).unref();
  }

  /** Resolves once no record is being built; from now on each is built as its exchange ends. */
  async close(): Promise<void> {
    this.#delayMs = 0;
    this.#drain();
    if (this.#building > 0) await new Promise<void>((resolve) => this.#whenIdle.push(resolve));
  }

  #drain(): void {
    clearTimeout(this.#timer ?? undefined);
    this.#timer = null;
    const ended = this.#ended;
    this.#ended = [];
    for (const [exchange, capture] of ended) {
      this.#building++;
      void this.#build(exchange, capture).then(this.#built, this.#built);
    }
  }

  readonly #built = (): void => {
    if (--this.#building > 0) return;
    const idle = this.#whenIdle;
    this.#whenIdle = [];
    for (const resolve of idle) resolve();
  };
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
