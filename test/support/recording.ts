/**
 * The capture observer with the audit recorder consuming its facts, wired as runtime.ts wires
 * them but with the test's own sinks in place of the journal. Not a fake: the real classes.
 */
import { apiKeyOf, HeaderRedactor, identify, InstitutionResolver } from '../../src/audit/record/identity.ts';
import { Recorder, type RecordSink } from '../../src/audit/record/recorder.ts';
import type { Backpressure } from '../../src/capture/backlog.ts';
import { CaptureObserver } from '../../src/capture/capture-observer.ts';
import type { MemoryAccount } from '../../src/memory-budget.ts';

export interface RecordingOptions {
  batchMs: number;
  sinks: RecordSink[];
  onFailure: (error: unknown, stage: string) => void;
  maxBodyBytes?: number;
  memory?: MemoryAccount;
  backpressure?: Backpressure;
}

export function recordingObserver(options: RecordingOptions): CaptureObserver {
  const institutions = new InstitutionResolver('x-institution-id', new Map());
  const capture = new CaptureObserver({
    maxBodyBytes: options.maxBodyBytes ?? 1024,
    keepBodies: true,
    batchMs: options.batchMs,
    identify: (exchange) => {
      const apiKey = identify(apiKeyOf(exchange.req.headers));
      const { institution, source } = institutions.resolveWithSource(exchange.req.headers, apiKey);
      return { apiKey, institution, institutionSource: source };
    },
    memory: options.memory,
    backpressure: options.backpressure,
    onFailure: options.onFailure,
  });
  capture.consume(
    new Recorder({
      redactor: new HeaderRedactor([]),
      traceOf: () => null,
      usageInjected: () => false,
      sinks: options.sinks,
      onFailure: options.onFailure,
    }),
  );
  return capture;
}
