/**
 * Prometheus metrics (prom-client) for what operators watch: traffic, latency, tokens, bytes,
 * failures, WebSocket sessions, the audit pipeline and the proxy's own overhead. Every label
 * is bounded: operations are a fixed vocabulary, models and institutions fold into `other`; and
 * so is every metric labelled from traffic: past METRICS_MAX_SERIES_PER_METRIC series, new label
 * combinations fold into `other` too, counted in openai_proxy_metric_series_overflow_total.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type LabelValues, type RegistryContentType } from 'prom-client';
import type { FactsConsumer } from '../capture/capture-observer.ts';
import type { ExchangeFacts } from '../capture/facts.ts';
import type { MetricsConfig } from '../config.ts';
import type { MetricsEndpoint } from '../admin.ts';
import type { MemoryBudgetStats } from '../memory-budget.ts';
import type { Exchange, Observer } from '../proxy/observer.ts';
import { genAiOperationName } from '../capture/operation.ts';
import { isPricedOperation } from '../policy/cost.ts';
import { BoundedLabel, SeriesCap, operationLabel } from './labels.ts';
import { operationErrorType } from './error-type.ts';

/** Durations of LLM calls: 5 ms to over 5 minutes (reasoning models think long). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320];
/** GenAI semantic-convention advice for gen_ai.client.operation.duration, extended past 81.92 s. */
const GENAI_DURATION_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68];
/** GenAI semantic-convention advice for gen_ai.client.token.usage: powers of 4. */
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];
/** The proxy's own work per exchange: tens of microseconds when healthy. */
const OVERHEAD_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

export interface AuditPipelineStats {
  journal: {
    appended: number;
    appendedBytes: number;
    dropped: number;
    writable: boolean;
    tornLinesSkipped: number;
    reopened: number;
    pendingBytes: number;
  } | null;
  shipper: { shipped: number; retries: number; deadLettered: number; deadLetterFailures: number; lagRecords: number; lagSeconds: number; up: boolean } | null;
}

/** Policy file reloads since start (POLICY_FILE), by result. */
export interface PolicyReloadStats {
  ok: number;
  error: number;
}

/** One window of one institution's limit, for openai_proxy_quota_used_ratio (policy/limits.ts). */
export interface QuotaUsage {
  institution: string;
  window: string;
  kind: string;
  used: number;
  limit: number;
}

/** A counter whose label combinations are capped (labels.ts, SeriesCap). */
export class CappedCounter<L extends string> {
  constructor(
    readonly metric: Counter<L>,
    readonly series: SeriesCap<L>,
  ) {}

  inc(labels: LabelValues<L>, value?: number): void {
    this.metric.inc(this.series.labels(labels), value);
  }
}

/** A histogram whose label combinations are capped (labels.ts, SeriesCap). */
export class CappedHistogram<L extends string> {
  constructor(
    readonly metric: Histogram<L>,
    readonly series: SeriesCap<L>,
  ) {}

  observe(labels: LabelValues<L>, value: number, exemplar?: Record<string, string>): void {
    const capped = this.series.labels(labels);
    if (exemplar === undefined) this.metric.observe(capped, value);
    else this.metric.observe({ labels: capped, value, exemplarLabels: exemplar as LabelValues<L> });
  }
}

interface MetricDefinition<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  /** Labels a folded combination keeps: a small vocabulary the proxy sets itself, never client data. */
  keep?: readonly L[];
}

/**
 * prom-client's totals of active handles, requests and resources are gauges named `_total`, which
 * the naming rules keep for counters (promtool rejects them); each is the sum of the same gauge
 * by `type` (`sum(nodejs_active_handles)`), so they are dropped rather than renamed.
 * https://prometheus.io/docs/practices/naming/#metric-names
 */
const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export class ProxyMetrics implements MetricsEndpoint, FactsConsumer {
  readonly registry: Registry<RegistryContentType>;
  readonly #registers: Registry<RegistryContentType>[];
  readonly #maxSeries: number;
  readonly #overflow: Counter<'metric'>;
  readonly #models: BoundedLabel;
  readonly #institutions: BoundedLabel;
  readonly #exemplars: boolean;
  readonly #traceOf: ((exchange: Exchange) => { traceId: string; spanId: string } | null) | undefined;
  #rendering: Promise<unknown> = Promise.resolve();

  readonly requests: CappedCounter<'operation' | 'model' | 'status' | 'institution' | 'outcome'>;
  readonly duration: CappedHistogram<'operation' | 'model' | 'status'>;
  readonly ttfb: CappedHistogram<'operation' | 'model' | 'stream'>;
  readonly overhead: CappedHistogram<'operation'>;
  readonly tokens: CappedCounter<'model' | 'institution' | 'type'>;
  readonly cost: CappedCounter<'institution' | 'model'>;
  readonly costUnknown: CappedCounter<'model'>;
  readonly quotaRejected: CappedCounter<'institution' | 'window' | 'kind'>;
  readonly inFlight: Gauge<'kind'>;
  readonly #inFlight: Record<Exchange['kind'], number> = { http: 0, websocket: 0 };
  readonly requestBytes: CappedCounter<'operation'>;
  readonly responseBytes: CappedCounter<'operation'>;
  readonly upstreamFailures: CappedCounter<'outcome'>;
  readonly wsSessions: CappedCounter<'outcome'>;
  readonly wsMessages: CappedCounter<'direction'>;
  readonly tapFailures: CappedCounter<'stage'>;
  readonly genaiDuration: CappedHistogram<'gen_ai_operation_name' | 'gen_ai_provider_name' | 'gen_ai_request_model' | 'error_type'>;
  readonly genaiTokens: CappedHistogram<'gen_ai_operation_name' | 'gen_ai_provider_name' | 'gen_ai_request_model' | 'gen_ai_token_type'>;

  constructor(
    config: MetricsConfig,
    options: {
      exemplars: boolean;
      auditStats: () => AuditPipelineStats;
      memoryStats: () => MemoryBudgetStats;
      /** The exchange's server span, for exemplars. */
      traceOf?: (exchange: Exchange) => { traceId: string; spanId: string } | null;
      /** Null without POLICY_FILE: no series then. */
      policyReloads?: (() => PolicyReloadStats) | null;
      /** Each institution's limited windows; null without limits: no series then. */
      quotaUsage?: (() => QuotaUsage[]) | null;
    },
  ) {
    this.#models = new BoundedLabel(config.maxModels);
    this.#institutions = new BoundedLabel(config.maxInstitutions);
    this.#maxSeries = config.maxSeriesPerMetric;
    this.#exemplars = options.exemplars;
    this.#traceOf = options.traceOf;
    // prom-client only lets exemplar-carrying metrics join a registry created as OpenMetrics.
    this.registry = new Registry<RegistryContentType>();
    if (options.exemplars) this.registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const registers: Registry<RegistryContentType>[] = [this.registry];
    this.#registers = registers;
    const enableExemplars = options.exemplars;
    collectDefaultMetrics({ register: this.registry });
    for (const name of GAUGES_NAMED_TOTAL) this.registry.removeSingleMetric(name);

    this.#overflow = new Counter({
      name: 'openai_proxy_metric_series_overflow_total',
      help: 'Observations whose labels were folded into "other" because their metric already held METRICS_MAX_SERIES_PER_METRIC series.',
      labelNames: ['metric'],
      registers,
    });

    this.requests = this.#counter({
      name: 'openai_proxy_requests_total',
      help: 'Proxied exchanges by API operation, model, HTTP status, institution and outcome.',
      labelNames: ['operation', 'model', 'status', 'institution', 'outcome'],
      keep: ['status', 'outcome'],
    });
    this.duration = this.#histogram(
      {
        name: 'openai_proxy_request_duration_seconds',
        help: 'Whole exchange, first request byte to last response byte.',
        labelNames: ['operation', 'model', 'status'],
        keep: ['status'],
      },
      DURATION_BUCKETS,
      enableExemplars,
    );
    this.ttfb = this.#histogram(
      {
        name: 'openai_proxy_upstream_ttfb_seconds',
        help: 'Request start to the first response byte from upstream (time to first token for streams).',
        labelNames: ['operation', 'model', 'stream'],
        keep: ['stream'],
      },
      DURATION_BUCKETS,
      enableExemplars,
    );
    this.overhead = this.#histogram(
      {
        name: 'openai_proxy_overhead_seconds',
        help: 'Time spent in the proxy itself, not waiting on the client or upstream (also in the Server-Timing header).',
        labelNames: ['operation'],
      },
      OVERHEAD_BUCKETS,
    );
    this.tokens = this.#counter({
      name: 'openai_proxy_tokens_total',
      help: 'Tokens reported by upstream usage, by model, institution and type (input, output, cached, reasoning).',
      labelNames: ['model', 'institution', 'type'],
      keep: ['type'],
    });
    this.cost = this.#counter({
      name: 'openai_proxy_cost_usd_total',
      help: 'What exchanges cost in USD at the price table (shipped prices and the policy file\'s prices:), by institution and model (openai.costUsd).',
      labelNames: ['institution', 'model'],
    });
    this.quotaRejected = this.#counter({
      name: 'openai_proxy_quota_rejected_total',
      help: 'Requests refused with 429 quota_exceeded (POLICY_FILE limits), by institution and the window and kind that refused them.',
      labelNames: ['institution', 'window', 'kind'],
      keep: ['window', 'kind'],
    });
    this.costUnknown = this.#counter({
      name: 'openai_proxy_cost_unknown_total',
      help: 'Exchanges of a billed operation whose cost is unknown (model not in the price table, or no usage to price), by model.',
      labelNames: ['model'],
    });
    const inFlight = this.#inFlight;
    // Not capped: its two kinds are the keys of a record, not values from traffic.
    this.inFlight = new Gauge({
      name: 'openai_proxy_requests_in_flight',
      help: 'Exchanges in progress (kind: http or websocket).',
      labelNames: ['kind'],
      registers,
      collect(this: Gauge<'kind'>) {
        for (const [kind, count] of Object.entries(inFlight)) this.set({ kind }, count);
      },
    });
    this.requestBytes = this.#counter({ name: 'openai_proxy_request_bytes_total', help: 'Request body bytes received from clients.', labelNames: ['operation'] });
    this.responseBytes = this.#counter({ name: 'openai_proxy_response_bytes_total', help: 'Response body bytes received from upstream.', labelNames: ['operation'] });
    this.upstreamFailures = this.#counter({
      name: 'openai_proxy_upstream_failures_total',
      help: 'Exchanges upstream failed, by outcome (upstream_unreachable, upstream_timeout, upstream_reset); client aborts and refusals are in openai_proxy_requests_total{outcome}.',
      labelNames: ['outcome'],
    });
    this.wsSessions = this.#counter({ name: 'openai_proxy_websocket_sessions_total', help: 'WebSocket sessions ended, by outcome.', labelNames: ['outcome'] });
    this.wsMessages = this.#counter({ name: 'openai_proxy_websocket_messages_total', help: 'WebSocket messages relayed, by sender (client or upstream).', labelNames: ['direction'] });
    this.tapFailures = this.#counter({ name: 'openai_proxy_observer_failures_total', help: 'Failures inside observers (capture, audit, telemetry); the exchange itself went on.', labelNames: ['stage'] });
    this.genaiDuration = this.#histogram(
      {
        name: 'gen_ai_client_operation_duration_seconds',
        help: 'GenAI semantic convention gen_ai.client.operation.duration for inference calls.',
        labelNames: ['gen_ai_operation_name', 'gen_ai_provider_name', 'gen_ai_request_model', 'error_type'],
        keep: ['gen_ai_operation_name', 'gen_ai_provider_name', 'error_type'],
      },
      GENAI_DURATION_BUCKETS,
    );
    this.genaiTokens = this.#histogram(
      {
        name: 'gen_ai_client_token_usage',
        help: 'GenAI semantic convention gen_ai.client.token.usage: tokens per call by type (input, output).',
        labelNames: ['gen_ai_operation_name', 'gen_ai_provider_name', 'gen_ai_request_model', 'gen_ai_token_type'],
        keep: ['gen_ai_operation_name', 'gen_ai_provider_name', 'gen_ai_token_type'],
      },
      TOKEN_BUCKETS,
    );
    this.#auditGauges(options.auditStats, registers);
    this.#memoryGauges(options.memoryStats, registers);
    if (options.policyReloads != null) this.#policyReloads(options.policyReloads, registers);
    if (options.quotaUsage != null) this.#quotaGauge(options.quotaUsage, registers);
  }

  /** Read at scrape time from the limiter: nothing is done per request for it. */
  #quotaGauge(usage: () => QuotaUsage[], registers: Registry<RegistryContentType>[]): void {
    const institutions = this.#institutions;
    new Gauge({
      name: 'openai_proxy_quota_used_ratio',
      help: 'Share of each institution\'s limit used in its current window (1 = at the limit), by institution, window and kind.',
      labelNames: ['institution', 'window', 'kind'],
      registers,
      collect(this: Gauge<'institution' | 'window' | 'kind'>) {
        // Rebuilt at each scrape, so a limit removed by a reload leaves no stale series; the
        // institutions folded into `other` show the highest of their ratios.
        const ratios = new Map<string, { institution: string; window: string; kind: string; ratio: number }>();
        for (const u of usage()) {
          const institution = institutions.value(u.institution);
          const key = `${institution}\u0000${u.window}\u0000${u.kind}`;
          const ratio = u.limit > 0 ? u.used / u.limit : 1;
          const seen = ratios.get(key);
          if (seen === undefined || seen.ratio < ratio) ratios.set(key, { institution, window: u.window, kind: u.kind, ratio });
        }
        this.reset();
        for (const r of ratios.values()) this.set({ institution: r.institution, window: r.window, kind: r.kind }, r.ratio);
      },
    });
  }

  /** POLICY_FILE reloads (SIGHUP or a file change), by result; an error kept the previous policy. */
  #policyReloads(stats: () => PolicyReloadStats, registers: Registry<RegistryContentType>[]): void {
    const last: PolicyReloadStats = { ok: 0, error: 0 };
    new Counter({
      name: 'openai_proxy_policy_reloads_total',
      help: 'Policy file reloads by result: ok (swapped in for new requests) or error (the previous policy stays in force).',
      labelNames: ['result'],
      registers,
      collect(this: Counter<'result'>) {
        const now = stats();
        for (const result of ['ok', 'error'] as const) {
          // inc(0) too, so both series exist from the first scrape (an alert needs one to watch).
          this.inc({ result }, now[result] - last[result]);
          last[result] = now[result];
        }
      },
    });
  }

  /** A counter labelled from traffic: its label combinations are capped. */
  #counter<L extends string>(definition: MetricDefinition<L>): CappedCounter<L> {
    const { name, help, labelNames } = definition;
    const metric = new Counter<L>({ name, help, labelNames, registers: this.#registers });
    return new CappedCounter(metric, this.#seriesCap(definition, 1));
  }

  /** A histogram labelled from traffic: its label combinations are capped. */
  #histogram<L extends string>(definition: MetricDefinition<L>, buckets: number[], enableExemplars = false): CappedHistogram<L> {
    const { name, help, labelNames } = definition;
    const metric = new Histogram<L>({ name, help, labelNames, buckets, enableExemplars, registers: this.#registers });
    // Each combination is a series per bucket, one for +Inf, one for _sum and one for _count.
    return new CappedHistogram(metric, this.#seriesCap(definition, buckets.length + 3));
  }

  #seriesCap<L extends string>(definition: MetricDefinition<L>, seriesPerCombination: number): SeriesCap<L> {
    const labels = { metric: definition.name };
    // Zero from the start, so an alert on its increase has a series to watch.
    this.#overflow.inc(labels, 0);
    const overflow = this.#overflow;
    return new SeriesCap(definition.labelNames, {
      maxCombinations: Math.floor(this.#maxSeries / seriesPerCombination),
      keep: definition.keep,
      onFold: () => overflow.inc(labels),
    });
  }

  #auditGauges(stats: () => AuditPipelineStats, registers: Registry<RegistryContentType>[]): void {
    const gauge = (name: string, help: string, read: (s: AuditPipelineStats) => number | undefined): void => {
      new Gauge({
        name,
        help,
        registers,
        collect(this: Gauge) {
          const value = read(stats());
          if (value !== undefined) this.set(value);
        },
      });
    };
    // Monotonic totals exposed through collect() must be counters for rate() to work.
    const counter = (name: string, help: string, read: (s: AuditPipelineStats) => number | undefined): void => {
      let last = 0;
      new Counter({
        name,
        help,
        registers,
        collect(this: Counter) {
          const value = read(stats());
          if (value !== undefined && value > last) {
            this.inc(value - last);
            last = value;
          }
        },
      });
    };
    if (stats().journal !== null) {
      counter('openai_proxy_audit_journal_appends_total', 'Audit records appended to the journal.', (s) => s.journal?.appended);
      counter('openai_proxy_audit_journal_bytes_total', 'Bytes appended to the journal.', (s) => s.journal?.appendedBytes);
      counter('openai_proxy_audit_dropped_total', 'Audit records that could not be written (journal unwritable or full).', (s) => s.journal?.dropped);
      counter('openai_proxy_audit_torn_lines_total', 'Torn journal lines cut after a crash.', (s) => s.journal?.tornLinesSkipped);
      gauge('openai_proxy_audit_journal_writable', '1 while the journal can write.', (s) => Number(s.journal?.writable));
      gauge('openai_proxy_audit_journal_pending_bytes', 'Journal lines queued or being written, in bytes (the recorder waits past a high-water mark).', (s) => s.journal?.pendingBytes);
      counter('openai_proxy_audit_journal_reopened_total', 'Times the journal found its segment or directory gone and reopened a new one.', (s) => s.journal?.reopened);
    }
    // A missing component exposes no series: a 0 would read as "down" on the dashboard.
    if (stats().shipper !== null) {
      counter('openai_proxy_audit_shipped_total', 'Audit records confirmed in MongoDB.', (s) => s.shipper?.shipped);
      counter('openai_proxy_audit_shipper_retries_total', 'Failed MongoDB shipping attempts that will be retried.', (s) => s.shipper?.retries);
      counter('openai_proxy_audit_dead_lettered_total', 'Records MongoDB refused (e.g. over 16 MiB), kept in AUDIT_DIR/dead-letter.ndjson.', (s) => s.shipper?.deadLettered);
      counter('openai_proxy_audit_dead_letter_failures_total', 'Failed writes to AUDIT_DIR/dead-letter.ndjson; the refused record is kept and written again later.', (s) => s.shipper?.deadLetterFailures);
      gauge('openai_proxy_audit_shipper_lag_records', 'Journal records not yet in MongoDB.', (s) => s.shipper?.lagRecords);
      gauge('openai_proxy_audit_shipper_lag_seconds', 'Age of the oldest record not yet in MongoDB.', (s) => s.shipper?.lagSeconds);
      gauge('openai_proxy_audit_shipper_up', '1 while the last MongoDB operation succeeded.', (s) => Number(s.shipper?.up));
    }
  }

  /** MEMORY_BUDGET_BYTES: the limit, what each holder holds, and what each was refused. */
  #memoryGauges(stats: () => MemoryBudgetStats, registers: Registry<RegistryContentType>[]): void {
    new Gauge({
      name: 'openai_proxy_memory_budget_bytes',
      help: 'MEMORY_BUDGET_BYTES: what the proxy may hold for exchanges (captures, inject buffers, journal lines).',
      registers,
      collect(this: Gauge) {
        this.set(stats().limitBytes);
      },
    });
    new Gauge({
      name: 'openai_proxy_memory_used_bytes',
      help: 'Bytes held against the memory budget, by holder (capture, inject, journal).',
      labelNames: ['holder'],
      registers,
      collect(this: Gauge<'holder'>) {
        for (const [holder, bytes] of Object.entries(stats().held)) this.set({ holder }, bytes);
      },
    });
    const last: Record<string, number> = {};
    new Counter({
      name: 'openai_proxy_memory_refused_total',
      help: 'Reservations the memory budget refused, by holder: a body not kept (capture) or a request refused with 503 (inject).',
      labelNames: ['holder'],
      registers,
      collect(this: Counter<'holder'>) {
        for (const [holder, count] of Object.entries(stats().refused)) {
          this.inc({ holder }, count - (last[holder] ?? 0));
          last[holder] = count;
        }
      },
    });
  }

  /** Counts exchanges in flight; the rest is recorded from the finished exchange's facts. */
  readonly observer: Observer = {
    start: (exchange) => {
      // Counted here and read at scrape time: a gauge update per exchange start and end would
      // hash and validate its labels twice per request.
      const inFlight = this.#inFlight;
      const kind = exchange.kind;
      inFlight[kind]++;
      return { end: () => inFlight[kind]-- };
    },
  };

  /** Records one finished exchange from its facts (a consumer of the capture observer). */
  facts(exchange: Exchange, facts: ExchangeFacts): void {
    const operation = operationLabel(facts.operation ?? undefined);
    const status = facts.status ?? 0;
    // Only a call upstream accepted may give a model its own label: junk model names get 4xx.
    const accepted = facts.outcome === 'ok' && status < 400;
    const model = this.#models.value(facts.requestModel ?? facts.responseModel, accepted);
    const institution = this.#institutions.value(facts.institution);
    const statusLabel = String(status);
    const exemplar = this.#exemplars ? this.#traceOf?.(exchange) : undefined;
    const exemplarLabels = exemplar === undefined || exemplar === null ? undefined : { trace_id: exemplar.traceId, span_id: exemplar.spanId };

    this.requests.inc({ operation, model, status: statusLabel, institution, outcome: facts.outcome });
    this.duration.observe({ operation, model, status: statusLabel }, facts.durationMs / 1000, exemplarLabels);
    if (facts.ttfbMs !== null) this.ttfb.observe({ operation, model, stream: String(facts.stream) }, facts.ttfbMs / 1000, exemplarLabels);
    if (facts.overheadMs !== null) this.overhead.observe({ operation }, facts.overheadMs / 1000);
    this.requestBytes.inc({ operation }, facts.requestBytes);
    this.responseBytes.inc({ operation }, facts.responseBytes);
    if (facts.outcome.startsWith('upstream_')) this.upstreamFailures.inc({ outcome: facts.outcome });
    if (facts.websocket !== null) {
      this.wsSessions.inc({ outcome: facts.outcome });
      this.wsMessages.inc({ direction: 'client' }, facts.websocket.messagesIn);
      this.wsMessages.inc({ direction: 'upstream' }, facts.websocket.messagesOut);
    }
    this.#observeUsage(facts, model, institution);
    if (facts.quota !== null) this.quotaRejected.inc({ institution, window: facts.quota.window, kind: facts.quota.kind });
    if (facts.costUsd !== null) this.cost.inc({ institution, model }, facts.costUsd);
    // Unknown only where OpenAI answered and may bill: not a refusal, nor an exchange upstream never answered.
    else if (isPricedOperation(facts.operation) && facts.upstreamStatus !== null) this.costUnknown.inc({ model });
  }

  #observeUsage(facts: ExchangeFacts, model: string, institution: string): void {
    const usage = facts.usage;
    const genaiOperation = genAiOperationName(facts.operation);
    if (genaiOperation !== null) {
      // The GenAI CLIENT span's error.type, from the same builder, so the two always agree.
      const errorType = operationErrorType(facts) ?? '';
      this.genaiDuration.observe(
        { gen_ai_operation_name: genaiOperation, gen_ai_provider_name: 'openai', gen_ai_request_model: model, error_type: errorType },
        facts.durationMs / 1000,
      );
    }
    if (usage === null) return;
    const types: Array<[string, number | null]> = [
      ['input', usage.inputTokens],
      ['output', usage.outputTokens],
      ['cached', usage.cachedTokens],
      ['reasoning', usage.reasoningTokens],
    ];
    for (const [type, value] of types) {
      if (value !== null && value > 0) this.tokens.inc({ model, institution, type }, value);
      if (genaiOperation !== null && value !== null && (type === 'input' || type === 'output')) {
        this.genaiTokens.observe(
          { gen_ai_operation_name: genaiOperation, gen_ai_provider_name: 'openai', gen_ai_request_model: model, gen_ai_token_type: type },
          value,
        );
      }
    }
  }

  /**
   * prom-client renames counters for OpenMetrics in place (dropping `_total`), which would leak
   * into the next text-format scrape; renders are serialised and the names restored after.
   */
  render(openMetrics: boolean): Promise<{ contentType: string; body: string }> {
    const next = this.#rendering.then(() => this.#render(openMetrics));
    this.#rendering = next.catch(() => undefined);
    return next;
  }

  async #render(openMetrics: boolean): Promise<{ contentType: string; body: string }> {
    const contentType = openMetrics ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE;
    const counters = (this.registry.getMetricsAsArray() as unknown[]).filter((m): m is { name: string } => m instanceof Counter);
    const names = counters.map((m) => m.name);
    this.registry.setContentType(contentType);
    try {
      return { contentType, body: await this.registry.metrics() };
    } finally {
      counters.forEach((m, i) => (m.name = names[i] as string));
    }
  }
}
