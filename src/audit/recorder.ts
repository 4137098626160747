/**
 * The capture observer: taps each exchange's bytes, and once it has ended builds its audit
 * record and hands it to the sinks (journal, metrics, tracing). A sink that fails is counted
 * and logged; the others still get the record.
 */
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
    const capture = new ExchangeCapture(exchange.req.headers, this.#options.maxBodyBytes);
    return {
      requestChunk: (chunk) => capture.request.push(chunk),
      responseHead: (_status, headers) => capture.responseHead(headers),
      responseChunk: (chunk) => capture.responseChunk(chunk),
      message: (direction, data) => capture.message(direction, data),
      end: () => {
        capture.responseEnd();
        this.#emit(exchange, capture).catch((err: unknown) => this.#options.onFailure(err, 'record'));
      },
    };
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
