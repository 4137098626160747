/**
 * Builds everything around the forwarding core from the config: tracing, the audit journal
 * (and MongoDB shipper), metrics, the capture observer, and how they shut down.
 */
import type { Components } from './app.ts';
import { Journal } from './audit/journal.ts';
import { MongoShipper } from './audit/mongo.ts';
import { HeaderRedactor, InstitutionResolver } from './audit/identity.ts';
import { recordBatchMs, Recorder, type RecordSink } from './audit/recorder.ts';
import type { Config } from './config.ts';
import { every, errorMessage, log } from './log.ts';
import { MemoryBudget } from './memory-budget.ts';
import { policyAdmission } from './policy/policy-admission.ts';
import { PolicyStore } from './policy/policy-store.ts';
import { AuditUnavailableError } from './proxy/errors.ts';
import type { ExchangeObserver } from './proxy/observer.ts';
import { StreamUsageInjector } from './proxy/stream-usage.ts';
import { ProxyMetrics, type AuditPipelineStats, type PolicyReloadStats } from './telemetry/metrics.ts';
import type { Tracing } from './telemetry/tracing.ts';
import { tracingRequested } from './telemetry/tracing-enabled.ts';

export interface Runtime {
  components: Components;
  journal: Journal | null;
  shipper: MongoShipper | null;
  metrics: ProxyMetrics | null;
  tracing: Tracing | null;
  /** What exchanges hold against MEMORY_BUDGET_BYTES (`stats` for /healthz and metrics). */
  memory: MemoryBudget;
  /** POLICY_FILE, loaded and followed (SIGHUP, file changes); null without it. */
  policy: PolicyStore | null;
  /** Flushes and closes what the runtime opened, after the servers have drained. */
  close(): Promise<void>;
}

type Env = Record<string, string | undefined>;

const JOURNAL_HIGH_WATER_BYTES = 16 * 1024 * 1024;

/** Throws PolicyFileError, before anything is opened, when POLICY_FILE is bad (main.ts exits 2). */
export async function createRuntime(config: Config, env: Env = process.env): Promise<Runtime> {
  const policyReloads: PolicyReloadStats = { ok: 0, error: 0 };
  const policy =
    config.policy === null
      ? null
      : new PolicyStore(config.policy.path, {
          env: config.policy.env,
          defaultInstitutionHeader: config.audit.institutionHeader,
          legacyInstitutions: config.audit.institutions,
          onReload: (result) => void policyReloads[result === 'success' ? 'ok' : 'error']++,
        });
  const tracing = tracingRequested(env) ? (await import('./telemetry/tracing.ts')).Tracing.start(env, config.genaiCaptureContent) : null;
  const shipping = config.audit.mongodbUri !== null;
  const memory = new MemoryBudget(config.memoryBudgetBytes);
  let shipper: MongoShipper | null = null;
  const journal = config.audit.enabled
    ? await Journal.open({
        dir: config.audit.dir,
        segmentBytes: config.audit.segmentBytes,
        fsync: config.audit.fsync,
        retentionDays: config.audit.retentionDays,
        retentionBytes: config.audit.retentionBytes,
        // With MongoDB, retention never deletes what has not been shipped yet.
        canDelete: shipping ? (path) => shipper?.canDelete(path) ?? false : undefined,
        memory: memory.account('journal'),
        // Lines waiting for the disk are a share of the budget, not all of it: the rest is for
        // the bodies of the exchanges in flight.
        highWaterBytes: Math.min(JOURNAL_HIGH_WATER_BYTES, config.memoryBudgetBytes / 4),
      })
    : null;
  if (journal !== null && config.audit.mongodbUri !== null) {
    shipper = MongoShipper.start({
      uri: config.audit.mongodbUri,
      db: config.audit.mongodbDb,
      dir: config.audit.dir,
      ttlDays: config.audit.ttlDays,
      keepShipped: config.audit.retentionDays !== null || config.audit.retentionBytes !== null,
      journal,
    });
  }
  const auditStats = (): AuditPipelineStats => ({
    journal: journal === null ? null : { ...journal.stats, writable: journal.writable },
    shipper: shipper?.stats() ?? null,
  });
  const metrics = config.metrics.enabled ? new ProxyMetrics(config.metrics, {
        exemplars: tracing !== null,
        auditStats,
        memoryStats: () => memory.stats,
        policyReloads: policy === null ? null : () => policyReloads,
      }) : null;
  const injector = config.audit.streamUsage === 'inject' ? new StreamUsageInjector(memory.account('inject')) : undefined;

  const onFailure = (err: unknown, stage: string): void => {
    metrics?.tapFailures.inc({ stage });
    every(`observer:${stage}`, 10_000, 'error', 'observer failed; the exchange went on', { stage, error: errorMessage(err) });
  };
  const sinks: RecordSink[] = [];
  if (journal !== null) sinks.push((record) => journal.append(record));
  if (metrics !== null) sinks.push((record, exchange) => metrics.observe(record, { overheadSeconds: exchange.overheadMs === null ? null : exchange.overheadMs / 1000 }));
  if (tracing !== null) sinks.push((record, exchange) => tracing.finish(exchange, record));

  const observers: ExchangeObserver[] = [];
  if (tracing !== null) observers.push(tracing.observer);
  if (metrics !== null) observers.push(metrics.observer);
  const recorder =
    sinks.length === 0
      ? null
      : new Recorder({
          maxBodyBytes: config.audit.maxBodyBytes,
          batchMs: recordBatchMs(journal === null ? null : config.audit.fsync),
          redactor: new HeaderRedactor(config.audit.redactHeaders),
          // With a policy, admission decides whose each exchange is (exchange.identity).
          institutions: policy === null ? new InstitutionResolver(config.audit.institutionHeader, config.audit.institutions) : null,
          traceOf: (exchange) => tracing?.traceOf(exchange) ?? null,
          usageInjected: (exchange) => injector?.injected(exchange) ?? false,
          sinks,
          onFailure,
          memory: memory.account('capture'),
          backpressure: journal ?? undefined,
        });
  if (recorder !== null) observers.push(recorder);
  const admission = [];
  if (config.audit.required && journal !== null) {
    admission.push(() => (journal.writable ? null : new AuditUnavailableError('the audit journal cannot write; requests are refused until it can (AUDIT_REQUIRED=true)')));
  }

  policy?.watch();

  return {
    journal,
    shipper,
    metrics,
    tracing,
    memory,
    policy,
    components: {
      observers,
      admission,
      ...(policy === null ? {} : { identity: policyAdmission(() => policy.current()) }),
      bodyRewriter: injector,
      metrics,
      health: () => ({ audit: auditHealth(auditStats()), memory: memory.stats, tracing: tracing !== null, policy: policy?.status() ?? null }),
      onTapFailure: (stage) => metrics?.tapFailures.inc({ stage }),
    },
    async close() {
      policy?.close();
      await recorder?.close();
      await shipper?.stop().catch((err: unknown) => log.error('shipper stop failed', { error: errorMessage(err) }));
      await journal?.close().catch((err: unknown) => log.error('journal close failed', { error: errorMessage(err) }));
      await tracing?.shutdown().catch((err: unknown) => log.error('tracing shutdown failed', { error: errorMessage(err) }));
    },
  };
}

function auditHealth(stats: AuditPipelineStats): Record<string, unknown> {
  return { journal: stats.journal, shipper: stats.shipper };
}
