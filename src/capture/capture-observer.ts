/**
 * The capture observer: the one tap that reads an exchange's bytes. It runs for every exchange
 * some consumer wants facts of, learns them as the bytes pass (field scanning and the SSE parser;
 * body copies only when a consumer asks for bodies), and once the exchange has ended computes its
 * facts once and hands them to each consumer (audit recorder, metrics, tracing), isolating each
 * from the others' failures. If the facts cannot be computed, consumers still get those the core
 * knows alone, so a span always ends and a request is always counted.
 */
import type { MemoryAccount } from '../memory-budget.ts';
import type { ResponseHeaders } from '../proxy/headers.ts';
import type { Exchange, Observer, Tap } from '../proxy/observer.ts';
import { Backlog, type Backpressure } from './backlog.ts';
import { ExchangeCapture } from './exchange-capture.ts';
import { exchangeFacts, factsFromCapture, type CapturedExchange, type ExchangeFacts, type Identify } from './facts.ts';
import { priceFacts, type CostOf } from './pricing.ts';

/** What audit, metrics and tracing implement to receive each finished exchange's facts. */
export interface FactsConsumer {
  /** Once per exchange, after it ended; `captured` holds the bodies when they were kept, else null. */
  facts(exchange: Exchange, facts: ExchangeFacts, captured: CapturedExchange | null): void;
}

export interface CaptureObserverOptions {
  /** The capture cap of each kept body (AUDIT_MAX_BODY_BYTES). */
  maxBodyBytes: number;
  /** Copy bodies (the audit record, span content); without, only facts are learnt and nothing is held. */
  keepBodies: boolean;
  /** Hand the redacted request body to consumers as `requestContent` (span content capture). */
  captureContent?: boolean;
  /** How long ended exchanges wait to be handed on together; 0 hands each at once. */
  batchMs: number;
  /** Resolves who sent an exchange, once (API key fingerprint, institution). */
  identify?: Identify;
  /** Prices each exchange's facts (`costUsd`); without it, every cost is null. */
  costOf?: CostOf;
  /** Where body copies are reserved until every consumer has had them. */
  memory?: MemoryAccount;
  /** Facts are handed on only while this consumer has room for them (the journal). */
  backpressure?: Backpressure;
  /** A failure, by stage: `start` or `capture` (reading the exchange), `cost` (pricing it), `facts` (a consumer threw on them). */
  onFailure: (error: unknown, stage: string) => void;
}

export class CaptureObserver implements Observer {
  readonly #options: CaptureObserverOptions;
  readonly #consumers: FactsConsumer[] = [];
  readonly #backlog: Backlog;

  constructor(options: CaptureObserverOptions) {
    this.#options = options;
    this.#backlog = new Backlog(options.batchMs, (exchange, capture) => this.#deliver(exchange, capture), options.backpressure ?? null);
  }

  /** Adds a consumer; each gets the facts of every exchange that starts after. */
  consume(consumer: FactsConsumer): void {
    this.#consumers.push(consumer);
  }

  start(exchange: Exchange): Tap {
    const options = this.#options;
    let capture: ExchangeCapture | null = null;
    try {
      capture = new ExchangeCapture(exchange.req, options.maxBodyBytes, options.memory, options.keepBodies);
    } catch (err) {
      // Consumers still get the facts the core knows at the end: spans end, requests are counted.
      options.onFailure(err, 'start');
    }
    return new CaptureTap(capture, exchange, this.#backlog);
  }

  /**
   * Hands on the facts of every exchange that has ended, resolves once every consumer has them, and
   * from now on hands each on as its exchange ends (the process is stopping).
   */
  close(): Promise<void> {
    return this.#backlog.close();
  }

  async #deliver(exchange: Exchange, capture: ExchangeCapture | null): Promise<void> {
    const options = this.#options;
    let facts: ExchangeFacts;
    let captured: CapturedExchange | null = null;
    try {
      if (capture === null) throw new Error('the exchange was not captured');
      const request = await capture.request.finish();
      const response = capture.response === null ? null : await capture.response.finish();
      captured = { request, response, responseHeaders: capture.responseHeaders };
      facts = factsFromCapture(exchange, capture, captured, { identify: options.identify, captureContent: options.captureContent === true });
      if (options.costOf !== undefined) {
        const pending = this.#price(exchange, facts, capture, captured, options.costOf);
        if (pending !== null) await pending;
      }
    } catch (err) {
      options.onFailure(err, 'capture');
      captured = null;
      facts = safeFacts(exchange, options.identify);
    }
    const bodies = capture?.keepBodies === true ? captured : null;
    for (const consumer of this.#consumers) {
      try {
        consumer.facts(exchange, facts, bodies);
      } catch (err) {
        options.onFailure(err, 'facts');
      }
    }
    capture?.release();
  }

  // A cost that cannot be computed leaves it null; the facts still go on. Only an estimate
  // (the tokenizer) makes it asynchronous: other exchanges add no await.
  #price(exchange: Exchange, facts: ExchangeFacts, capture: ExchangeCapture, captured: CapturedExchange, costOf: CostOf): Promise<void> | null {
    const failed = (err: unknown): void => this.#options.onFailure(err, 'cost');
    try {
      return priceFacts(exchange, facts, capture, captured, costOf)?.catch(failed) ?? null;
    } catch (err) {
      failed(err);
      return null;
    }
  }
}

function safeFacts(exchange: Exchange, identify: Identify | undefined): ExchangeFacts {
  try {
    return exchangeFacts(exchange, identify?.(exchange) ?? null);
  } catch {
    return exchangeFacts(exchange, null);
  }
}

/**
 * Feeds one exchange's capture, then queues it for its facts when the exchange ends. Methods, not
 * an object of arrow functions: this is created for every exchange.
 */
class CaptureTap implements Tap {
  readonly #capture: ExchangeCapture | null;
  readonly #exchange: Exchange;
  readonly #backlog: Backlog;

  constructor(capture: ExchangeCapture | null, exchange: Exchange, backlog: Backlog) {
    this.#capture = capture;
    this.#exchange = exchange;
    this.#backlog = backlog;
  }

  requestChunk(chunk: Buffer): void {
    this.#capture?.request.push(chunk);
  }

  responseHead(_status: number, headers: ResponseHeaders): void {
    this.#capture?.responseHead(headers);
  }

  responseChunk(chunk: Buffer): void {
    this.#capture?.responseChunk(chunk);
  }

  message(direction: 'client' | 'upstream', data: Buffer): void {
    this.#capture?.message(direction, data);
  }

  end(): void {
    // Queued whatever the parser says: the consumers' facts (and the spans' end) depend on it.
    try {
      this.#capture?.responseEnd();
    } finally {
      this.#backlog.add(this.#exchange, this.#capture);
    }
  }
}
