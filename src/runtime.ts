/**
 * Builds everything around the forwarding core from the config: tracing, the audit journal
 * (and MongoDB shipper), metrics, the capture observer, and how they shut down.
 *
 * The seam: observers (proxy/observer.ts) tap each exchange. The capture observer is the only one
 * that reads bytes; it computes each exchange's facts once and hands them to its consumers, the
 * audit recorder, metrics and tracing. Bodies are copied only for the audit record (and span
 * content, when asked for); metrics and tracing alone keep none.
 */
import type { Components } from './app.ts';
import { Journal, listSegments } from './audit/journal/journal.ts';
import { MongoShipper } from './audit/shipper/mongo.ts';
import { apiKeyOf, HeaderRedactor, identify, InstitutionResolver } from './audit/record/identity.ts';
import { recordBatchMs, Recorder, type RecordSink } from './audit/record/recorder.ts';
import { RECORD_BATCH_MS } from './capture/backlog.ts';
import { CaptureObserver } from './capture/capture-observer.ts';
import type { Identify } from './capture/facts.ts';
import type { CostOf } from './capture/pricing.ts';
import { StreamUsageInjector } from './capture/stream-usage-injector.ts';
import type { Config } from './config.ts';
import { every, errorMessage, log } from './log.ts';
import { MemoryBudget } from './memory-budget.ts';
import { exchangeCost, priceTableOf } from './policy/exchange-cost.ts';
import { Limiter } from './policy/limits.ts';
import { MongoQuotaStore } from './policy/quota-store-mongo.ts';
import { SharedCounts } from './policy/shared-counts.ts';
import { longestWindow, rebuildCounts } from './policy/limits-rebuild.ts';
import { policyAdmission } from './policy/policy-admission.ts';
import { PolicyStore } from './policy/policy-store.ts';
import { AuditUnavailableError } from './proxy/errors.ts';
import type { Exchange, Observer } from './proxy/observer.ts';
import type { Policy } from './policy/types.ts';
import { ProxyMetrics, type AuditPipelineStats, type PolicyReloadStats, type QuotaUsage } from './telemetry/metrics.ts';
import type { Tracing } from './telemetry/tracing.ts';

export interface Runtime {
  components: Components;
  journal: Journal | null;
  shipper: MongoShipper | null;
  metrics: ProxyMetrics | null;
  tracing: Tracing | null;
  /** The observer that reads each exchange's bytes and hands its facts to audit, metrics and tracing. */
  capture: CaptureObserver | null;
  /** The audit record's builder, a consumer of the capture's facts (with the journal). */
  recorder: Recorder | null;
  /** What exchanges hold against MEMORY_BUDGET_BYTES (`stats` for /healthz and metrics). */
  memory: MemoryBudget;
  /** POLICY_FILE, loaded and followed (SIGHUP, file changes); null without it. */
  policy: PolicyStore | null;
  /** The policy's limits, counted in this process (seeded from the journal at start); null without POLICY_FILE. */
  limiter: Limiter | null;
  /** Flushes and closes what the runtime opened, after the servers have drained. */
  close(): Promise<void>;
}

const JOURNAL_HIGH_WATER_BYTES = 16 * 1024 * 1024;

/** Throws PolicyFileError, before anything is opened, when POLICY_FILE is bad (main.ts exits 2). */
export async function createRuntime(config: Config): Promise<Runtime> {
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
  // The SDK is loaded only when tracing is on: off, it costs nothing at all.
  const tracing = config.tracing === null ? null : (await import('./telemetry/tracing.ts')).Tracing.start(config.tracing, config.genaiCaptureContent);
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
  // Counts outlive the process through the journal: the month's records are read back once here,
  // before any request is admitted (limits-rebuild.ts). Without the journal, they are in memory only.
  // With MONGODB_URI the counts that decide are shared by every process (quota-store-mongo.ts); the
  // client connects when first asked, so a policy without limits never talks to the database.
  const quotaStore =
    policy !== null && config.audit.mongodbUri !== null
      ? new MongoQuotaStore({ uri: config.audit.mongodbUri, db: config.audit.mongodbDb, timeoutMs: config.audit.quotaStoreTimeoutMs })
      : null;
  if (quotaStore !== null && policy !== null && longestWindow(policy.current()) !== null) {
    quotaStore.ensureIndexes().catch((err: unknown) => log.warn('quotas TTL index not created yet (tried again at the next write)', { error: errorMessage(err) }));
  }
  const shared = quotaStore === null ? null : new SharedCounts(quotaStore, { timeoutMs: config.audit.quotaStoreTimeoutMs });
  const limiter = policy === null ? null : new Limiter({ shared });
  const longest = policy === null ? null : longestWindow(policy.current());
  if (limiter !== null && journal !== null && longest !== null) {
    const rebuilt = await rebuildCounts(limiter.counters, await listSegments(config.audit.dir), Date.now(), longest);
    log.info('limit counts rebuilt from the audit journal', { window: longest, ...rebuilt, ms: Math.round(rebuilt.ms) });
  }
  if (limiter !== null && journal === null && longest !== null) {
    log.warn('AUDIT_ENABLED=false: limit counts are kept in memory only and start from zero at each restart');
  }
  const quotaUsage = (): QuotaUsage[] => {
    if (limiter === null || policy === null) return [];
    const out: QuotaUsage[] = [];
    for (const [institution, windows] of Object.entries(limiter.report(policy.current()).institutions)) {
      for (const w of windows) out.push({ institution, window: w.window, kind: w.kind, used: w.used, limit: w.limit });
    }
    return out;
  };
  const auditStats = (): AuditPipelineStats => ({
    journal: journal === null ? null : { ...journal.stats, writable: journal.writable },
    shipper: shipper?.stats() ?? null,
  });
  const metrics = config.metrics.enabled
    ? new ProxyMetrics(config.metrics, {
        exemplars: tracing !== null,
        auditStats,
        memoryStats: () => memory.stats,
        traceOf: (exchange) => tracing?.traceOf(exchange) ?? null,
        policyReloads: policy === null ? null : () => policyReloads,
        quotaUsage: limiter === null ? null : quotaUsage,
      })
    : null;
  // STREAM_USAGE=inject asks upstream for every stream's usage; otherwise, with limits, for the
  // streams of exchanges the limiter counts (policy contract: usage reported beats usage estimated).
  const injector =
    config.audit.streamUsage === 'inject'
      ? new StreamUsageInjector(memory.account('inject'))
      : limiter !== null
        ? new StreamUsageInjector(memory.account('inject'), (exchange) => limiter.counts(exchange))
        : undefined;

  const onFailure = (err: unknown, stage: string): void => {
    metrics?.tapFailures.inc({ stage });
    every(`observer:${stage}`, 10_000, 'error', 'observer failed; the exchange went on', { stage, error: errorMessage(err) });
  };
  const recorder =
    journal === null
      ? null
      : new Recorder({
          redactor: new HeaderRedactor(config.audit.redactHeaders),
          traceOf: (exchange) => tracing?.traceOf(exchange) ?? null,
          usageInjected: (exchange) => injector?.injected(exchange) ?? false,
          sinks: [(record) => journal.append(record)] satisfies RecordSink[],
          onFailure,
        });
  // Span content (opt-in) is read from the bodies, as the audit record is.
  const captureContent = tracing !== null && config.genaiCaptureContent;
  // With a policy, admission has decided whose each exchange is (exchange.identity); without one,
  // the header is believed, then INSTITUTIONS_FILE by the key's fingerprint.
  const institutions = new InstitutionResolver(config.audit.institutionHeader, config.audit.institutions);
  const identifyClient: Identify = (exchange) => {
    const decided = exchange.identity;
    if (decided !== null && decided !== undefined) return { apiKey: decided.apiKey, institution: decided.institution, institutionSource: decided.source };
    const apiKey = identify(apiKeyOf(exchange.req.headers));
    if (policy !== null) return { apiKey, institution: null, institutionSource: null };
    const { institution, source } = institutions.resolveWithSource(exchange.req.headers, apiKey);
    return { apiKey, institution, institutionSource: source };
  };
  // Each exchange is priced at the prices of the policy it was admitted under (a reload
  // mid-exchange does not reprice it); the shipped table without POLICY_FILE.
  const admittedUnder = new WeakMap<Exchange, Policy>();
  const costOf: CostOf = (input) => exchangeCost(input, priceTableOf(admittedUnder.get(input.exchange) ?? policy?.current() ?? null));
  const capture =
    recorder === null && metrics === null && tracing === null && limiter === null
      ? null
      : new CaptureObserver({
          maxBodyBytes: config.audit.maxBodyBytes,
          keepBodies: recorder !== null || captureContent,
          captureContent,
          batchMs: journal === null ? RECORD_BATCH_MS : recordBatchMs(config.audit.fsync),
          identify: identifyClient,
          costOf,
          memory: memory.account('capture'),
          backpressure: journal ?? undefined,
          onFailure,
        });
  // The capture taps first, so every other tap sees an exchange the capture is reading.
  const observers: Observer[] = [];
  if (capture !== null) observers.push(capture);
  if (tracing !== null) observers.push(tracing.observer);
  if (metrics !== null) observers.push(metrics.observer);
  if (recorder !== null) capture?.consume(recorder);
  if (metrics !== null) capture?.consume(metrics);
  if (tracing !== null) capture?.consume(tracing);
  if (limiter !== null) capture?.consume(limiter);
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
    capture,
    recorder,
    memory,
    policy,
    limiter,
    components: {
      observers,
      admission,
      ...(policy === null
        ? {}
        : {
            identity: policyAdmission(() => policy.current(), (exchange, admitted) => admittedUnder.set(exchange, admitted), limiter ?? undefined),
            quotas: () => limiter?.report(policy.current()),
          }),
      bodyRewriter: injector,
      metrics,
      health: () => ({ audit: auditHealth(auditStats()), memory: memory.stats, tracing: tracing !== null, policy: policy?.status() ?? null }),
      onTapFailure: (stage) => metrics?.tapFailures.inc({ stage }),
    },
    async close() {
      policy?.close();
      await shared?.close().catch((err: unknown) => log.error('quota store close failed', { error: errorMessage(err) }));
      await capture?.close();
      await shipper?.stop().catch((err: unknown) => log.error('shipper stop failed', { error: errorMessage(err) }));
      await journal?.close().catch((err: unknown) => log.error('journal close failed', { error: errorMessage(err) }));
      await tracing?.shutdown().catch((err: unknown) => log.error('tracing shutdown failed', { error: errorMessage(err) }));
    },
  };
}

function auditHealth(stats: AuditPipelineStats): Record<string, unknown> {
  return { journal: stats.journal, shipper: stats.shipper };
}
