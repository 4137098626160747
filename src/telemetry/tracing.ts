/**
 * OpenTelemetry traces: a SERVER span per exchange (continuing the client's `traceparent`) and
 * a CLIENT span for the upstream call with the GenAI conventions, exported over OTLP/HTTP.
 * Off, at no cost, unless an OTLP endpoint is configured.
 */
import {
  context,
  propagation,
  trace,
  SpanKind,
  SpanStatusCode,
  ROOT_CONTEXT,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import {
  ATTR_CLIENT_ADDRESS,
  ATTR_HTTP_REQUEST_METHOD,
  ATTR_HTTP_ROUTE,
  ATTR_NETWORK_PROTOCOL_VERSION,
  ATTR_SERVER_ADDRESS,
  ATTR_SERVER_PORT,
  ATTR_URL_FULL,
  ATTR_URL_PATH,
  ATTR_URL_QUERY,
  ATTR_URL_SCHEME,
  ATTR_USER_AGENT_ORIGINAL,
} from '@opentelemetry/semantic-conventions';
import type { TracingConfig } from '../config.ts';
import type { FactsConsumer } from '../capture/capture-observer.ts';
import type { ExchangeFacts } from '../capture/facts.ts';
import type { Exchange, Observer, Tap } from '../proxy/observer.ts';
import { redactQuery } from '../capture/redact-query.ts';
import { maskKeys } from '../capture/secrets.ts';
import { genAiOperationName, operationFromPath } from '../capture/operation.ts';
import { VERSION } from '../version.ts';
import { ExplicitContextOnly } from './explicit-context.ts';
import { clientOutcome, clientSpanName, contentAttributes, genaiAttributes, routeTemplate, serverOutcome } from './genai.ts';
import {
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_PROXY_REQUEST_ID,
  EVENT_FIRST_CHUNK,
  GEN_AI_PROVIDER_NAME_VALUE_OPENAI,
} from './semconv.ts';

const SERVICE_NAME = 'openai-api-proxy';

type ExporterConfig = NonNullable<ConstructorParameters<typeof OTLPTraceExporter>[0]>;
type Compression = NonNullable<ExporterConfig['compression']>;

/**
 * The exporter's settings from config.ts's tracing slice (the SDK itself would read process.env):
 * headers and certificates still come from process.env through the exporter's own fallback.
 */
export function exporterConfig(tracing: TracingConfig): ExporterConfig {
  return {
    url: tracing.url,
    compression: (tracing.compression ?? undefined) as Compression | undefined,
    timeoutMillis: tracing.timeoutMs ?? undefined,
  };
}

function batchConfig(tracing: TracingConfig): ConstructorParameters<typeof BatchSpanProcessor>[1] {
  const { batch } = tracing;
  return {
    scheduledDelayMillis: batch.scheduleDelayMs ?? undefined,
    exportTimeoutMillis: batch.exportTimeoutMs ?? undefined,
    maxQueueSize: batch.maxQueueSize ?? undefined,
    maxExportBatchSize: batch.maxExportBatchSize ?? undefined,
  };
}

interface Spans {
  server: Span;
  client: Span | null;
  firstChunkSeen: boolean;
  /** Ended: the facts came (kept for traceOf, which other consumers may ask after). */
  ended: boolean;
  /** The query with credentials redacted, as the spans show it. */
  query: string | null;
  operation: string | null;
}

/** What the CLIENT span says of an upstream origin; parsed once per origin (they come from the config). */
interface OriginAttributes {
  origin: string;
  hostname: string;
  port: number;
}

function originAttributes(origin: string): OriginAttributes {
  const url = new URL(origin);
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  return { origin: url.origin, hostname: url.hostname, port };
}

/** performance.now() as epoch ms: every span time here comes from this one clock, so children nest. */
function epochMs(hr: number): number {
  return performance.timeOrigin + hr;
}

function firstChunk(spans: Spans): void {
  if (spans.firstChunkSeen) return;
  spans.firstChunkSeen = true;
  spans.client?.addEvent(EVENT_FIRST_CHUNK, epochMs(performance.now()));
}

function stripTraceHeaders(headers: string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    const name = (headers[i] as string).toLowerCase();
    if (name === 'traceparent' || name === 'tracestate') headers.splice(i, 2);
  }
}

/** The SDK that registered itself with the API globals last; only it may unregister them. */
let registered: NodeSDK | null = null;

function disableGlobals(): void {
  trace.disable();
  propagation.disable();
  context.disable();
}

/**
 * An observer (its taps start the spans and propagate the context upstream) and a consumer of the
 * capture's facts (which end them): no audit record is needed, nor any body kept.
 */
export class Tracing implements FactsConsumer {
  readonly #sdk: NodeSDK;
  readonly #tracer: Tracer;
  readonly #captureContent: boolean;
  readonly #spans = new WeakMap<Exchange, Spans>();
  readonly #origins = new Map<string, OriginAttributes>();

  private constructor(sdk: NodeSDK, tracer: Tracer, captureContent: boolean) {
    this.#sdk = sdk;
    this.#tracer = tracer;
    this.#captureContent = captureContent;
  }

  /**
   * Starts the SDK from config.ts's tracing slice; traces only (metrics are Prometheus').
   * The API globals accept one registration per process, so whatever an earlier start left
   * registered is dropped first; the tracer is taken from this SDK's own provider right away,
   * so it keeps exporting here even if another Tracing starts later in the same process.
   */
  static start(tracing: TracingConfig, captureContent: boolean): Tracing {
    const processor = new BatchSpanProcessor(new OTLPTraceExporter(exporterConfig(tracing)), batchConfig(tracing));
    const sdk = new NodeSDK({
      serviceName: tracing.serviceName,
      spanProcessors: [processor],
      metricReaders: [],
      logRecordProcessors: [],
      instrumentations: [],
      contextManager: new ExplicitContextOnly(),
    });
    disableGlobals();
    sdk.start();
    registered = sdk;
    return new Tracing(sdk, trace.getTracer(SERVICE_NAME, VERSION), captureContent);
  }

  readonly observer: Observer = {
    start: (exchange) => this.#start(exchange),
  };

  #start(exchange: Exchange): Tap {
    const req = exchange.req;
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const path = exchange.path;
    const query = redactQuery(exchange.query);
    const operation = operationFromPath(path);
    const route = operation === null ? undefined : routeTemplate(path);
    const secure = 'encrypted' in req.socket;
    const server = this.#tracer.startSpan(
      route === undefined ? exchange.method : `${exchange.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        startTime: epochMs(exchange.startHr),
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: exchange.method,
          [ATTR_URL_PATH]: maskKeys(path),
          [ATTR_URL_QUERY]: query ?? undefined,
          [ATTR_URL_SCHEME]: secure ? 'https' : 'http',
          [ATTR_HTTP_ROUTE]: route,
          [ATTR_CLIENT_ADDRESS]: req.socket.remoteAddress,
          [ATTR_USER_AGENT_ORIGINAL]: req.headers['user-agent'],
          [ATTR_NETWORK_PROTOCOL_VERSION]: req.httpVersion,
          [ATTR_PROXY_REQUEST_ID]: exchange.id,
        },
      },
      parent,
    );
    const spans: Spans = { server, client: null, firstChunkSeen: false, ended: false, query, operation };
    this.#spans.set(exchange, spans);
    return {
      upstreamRequest: (headers) => {
        spans.client = this.#startClient(exchange, spans);
        // The upstream's parent is our CLIENT span, never the caller's span.
        stripTraceHeaders(headers);
        const carrier: Record<string, string> = {};
        propagation.inject(trace.setSpan(ROOT_CONTEXT, spans.client), carrier);
        for (const name in carrier) headers.push(name, carrier[name] as string);
      },
      responseChunk: () => firstChunk(spans),
      message: (direction) => {
        if (direction === 'upstream') firstChunk(spans);
      },
    };
  }

  #startClient(exchange: Exchange, spans: Spans): Span {
    const originKey = exchange.origin ?? 'http://unknown';
    let origin = this.#origins.get(originKey);
    if (origin === undefined) {
      origin = originAttributes(originKey);
      this.#origins.set(originKey, origin);
    }
    const query = spans.query;
    // What is known before the body is read; the GenAI conventions want the provider at span start.
    const operation = genAiOperationName(spans.operation);
    return this.#tracer.startSpan(
      operation ?? exchange.method,
      {
        kind: SpanKind.CLIENT,
        startTime: epochMs(performance.now()),
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: exchange.method,
          [ATTR_SERVER_ADDRESS]: origin.hostname,
          [ATTR_SERVER_PORT]: origin.port,
          // The URL actually requested: the origin's base path included, the query redacted.
          [ATTR_URL_FULL]: maskKeys(`${origin.origin}${exchange.upstreamPath ?? exchange.path}${query === null ? '' : `?${query}`}`),
          ...(operation === null
            ? {}
            : { [ATTR_GEN_AI_OPERATION_NAME]: operation, [ATTR_GEN_AI_PROVIDER_NAME]: GEN_AI_PROVIDER_NAME_VALUE_OPENAI }),
        },
      },
      trace.setSpan(ROOT_CONTEXT, spans.server),
    );
  }

  /** The server span's ids, for the audit record's `trace` field. */
  traceOf(exchange: Exchange): { traceId: string; spanId: string } | null {
    const spans = this.#spans.get(exchange);
    if (spans === undefined) return null;
    const { traceId, spanId } = spans.server.spanContext();
    return { traceId, spanId };
  }

  /** Completes the exchange's spans from its facts. */
  facts(exchange: Exchange, facts: ExchangeFacts): void {
    const spans = this.#spans.get(exchange);
    if (spans === undefined || spans.ended) return;
    spans.ended = true;
    const end = epochMs(exchange.endHr ?? performance.now());
    // Ended whatever the attributes do: a span left open is never exported.
    try {
      if (spans.client !== null) this.#finishClient(spans.client, exchange, facts);
    } finally {
      spans.client?.end(end);
      try {
        const server = serverOutcome(facts);
        spans.server.setAttributes(server.attributes);
        if (server.error) spans.server.setStatus({ code: SpanStatusCode.ERROR, message: server.message });
      } finally {
        spans.server.end(end);
      }
    }
  }

  #finishClient(span: Span, exchange: Exchange, facts: ExchangeFacts): void {
    const client = clientOutcome(facts, facts.upstreamStatus);
    span.updateName(clientSpanName(exchange.method, facts));
    span.setAttributes(client.attributes);
    span.setAttributes(genaiAttributes(facts));
    if (this.#captureContent) span.setAttributes(contentAttributes(facts));
    if (client.error) span.setStatus({ code: SpanStatusCode.ERROR, message: client.message });
  }

  /** Flushes and stops the SDK; leaves the API globals as if it had never started, unless a later one took them. */
  async shutdown(): Promise<void> {
    try {
      await this.#sdk.shutdown();
    } finally {
      if (registered === this.#sdk) {
        registered = null;
        disableGlobals();
      }
    }
  }
}
