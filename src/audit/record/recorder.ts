/**
 * The audit recorder: a consumer of the capture observer's facts (capture/capture-observer.ts).
 * From each finished exchange's facts and captured bodies it builds the audit record and hands it
 * to the sinks (the journal). A record that fails to build, or a sink that fails, is counted and
 * logged; metrics and tracing, consumers of the same facts, never depend on it.
 */
import { RECORD_BATCH_MS } from '../../capture/backlog.ts';
import type { FactsConsumer } from '../../capture/capture-observer.ts';
import type { CapturedExchange, ExchangeFacts } from '../../capture/facts.ts';
import type { Exchange } from '../../proxy/observer.ts';
import { buildRecord } from './build-record.ts';
import type { HeaderRedactor } from './identity.ts';
import type { FsyncPolicy } from '../journal/journal-writer.ts';
import type { AuditRecord } from './record.ts';

export type RecordSink = (record: AuditRecord, exchange: Exchange) => void;

export interface RecorderOptions {
  redactor: HeaderRedactor;
  traceOf: (exchange: Exchange) => { traceId: string; spanId: string } | null;
  usageInjected: (exchange: Exchange) => boolean;
  sinks: RecordSink[];
  onFailure: (error: unknown, stage: string) => void;
}

/** No wait when the journal fsyncs every record (`always`): each is to be durable as soon as it can be. */
export function recordBatchMs(fsync: FsyncPolicy | null): number {
  return fsync === 'always' ? 0 : RECORD_BATCH_MS;
}

export class Recorder implements FactsConsumer {
  readonly #options: RecorderOptions;

  constructor(options: RecorderOptions) {
    this.#options = options;
  }

  facts(exchange: Exchange, facts: ExchangeFacts, captured: CapturedExchange | null): void {
    const options = this.#options;
    let record: AuditRecord;
    try {
      record = buildRecord({
        exchange,
        facts,
        captured,
        redactor: options.redactor,
        trace: options.traceOf(exchange),
        usageInjected: options.usageInjected(exchange),
      });
    } catch (err) {
      options.onFailure(err, 'record');
      return;
    }
    for (const sink of options.sinks) {
      try {
        sink(record, exchange);
      } catch (err) {
        options.onFailure(err, 'sink');
      }
    }
  }
}
