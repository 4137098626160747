/**
 * The capture observer: taps each exchange's bytes, and once it has ended builds its audit
 * record and hands it to the sinks (journal, metrics, tracing). A sink that fails is counted
 * and logged; the others still get the record.
 */
import type { ResponseHeaders } from '../proxy/headers.ts';
import type { Exchange, ExchangeObserver, ExchangeTap } from '../proxy/observer.ts';
import { buildRecord } from './build-record.ts';
import { ExchangeCapture } from './exchange-capture.ts';
import { apiKeyOf, identify, type HeaderRedactor, type InstitutionResolver } from './identity.ts';
import type { AuditRecord } from './record.ts';

export type RecordSink = (record: AuditRecord, exchange: Exchange) => void;

export interface RecorderOptions {
  maxBodyBytes: number;
  redactor: HeaderRedactor;
  institutions: InstitutionResolver;
  traceOf: (exchange: Exchange) => { traceId: string; spanId: string } | null;
  usageInjected: (exchange: Exchange) => boolean;
  sinks: RecordSink[];
  onFailure: (error: unknown, stage: string) => void;
}

export class Recorder implements ExchangeObserver {
  readonly #options: RecorderOptions;

  constructor(options: RecorderOptions) {
    this.#options = options;
  }

  start(exchange: Exchange): ExchangeTap {
    const capture = new ExchangeCapture(exchange.req, this.#options.maxBodyBytes);
    return new RecordingTap(capture, () => this.#record(exchange, capture));
  }

  #record(exchange: Exchange, capture: ExchangeCapture): void {
    this.#emit(exchange, capture).catch((err: unknown) => this.#options.onFailure(err, 'record'));
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

/**
 * Feeds one exchange's capture, then has the record built when the exchange ends. Methods, not
 * an object of arrow functions: under tsx each named arrow function costs an
 * Object.defineProperty to create, and this is created for every exchange.
 */
class RecordingTap implements ExchangeTap {
  readonly #capture: ExchangeCapture;
  readonly #ended: () => void;

  constructor(capture: ExchangeCapture, ended: () => void) {
    this.#capture = capture;
    this.#ended = ended;
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
    this.#ended();
  }
}
