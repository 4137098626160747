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
import type { AuditRecord } from '../audit/record.ts';
import { operationFromPath } from '../capture/operation.ts';
import type { Exchange, ExchangeObserver, ExchangeTap } from '../proxy/observer.ts';
import { splitTarget } from '../proxy/routes.ts';
import { clientSpanName, contentAttributes, genaiAttributes, responseAttributes, routeTemplate } from './genai.ts';
import { ATTR_PROXY_REQUEST_ID, EVENT_FIRST_CHUNK } from './semconv.ts';

const SERVICE_NAME = 'openai-api-proxy';
const VERSION = '0.1.0';

type Env = Record<string, string | undefined>;

export function tracingRequested(env: Env): boolean {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? env.OTEL_EXPORTER_OTLP_ENDPOINT;
  return endpoint !== undefined && endpoint !== '' && env.OTEL_SDK_DISABLED !== 'true' && env.OTEL_TRACES_EXPORTER !== 'none';
}

interface Spans {
  server: Span;
  client: Span | null;
  firstChunkSeen: boolean;
}

function epochMs(hr: number): number {
  return performance.timeOrigin + hr;
}

function firstChunk(spans: Spans): void {
  if (spans.firstChunkSeen) return;
  spans.firstChunkSeen = true;
  spans.client?.addEvent(EVENT_FIRST_CHUNK);
}

function stripTraceHeaders(headers: string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    const name = (headers[i] as string).toLowerCase();
    if (name === 'traceparent' || name === 'tracestate') headers.splice(i, 2);
  }
}

export class Tracing {
  readonly #sdk: NodeSDK;
  readonly #processor: BatchSpanProcessor;
  readonly #tracer: Tracer;
  readonly #captureContent: boolean;
  readonly #spans = new WeakMap<Exchange, Spans>();

  private constructor(sdk: NodeSDK, processor: BatchSpanProcessor, captureContent: boolean) {
    this.#sdk = sdk;
    this.#processor = processor;
    this.#tracer = trace.getTracer(SERVICE_NAME, VERSION);
    this.#captureContent = captureContent;
  }

  /** Starts the SDK from the standard OTEL_* variables; traces only (metrics are Prometheus'). */
  static start(env: Env, captureContent: boolean): Tracing {
    // OTLPTraceExporter and BatchSpanProcessor read the standard OTEL_EXPORTER_OTLP_* and OTEL_BSP_* variables.
    const processor = new BatchSpanProcessor(new OTLPTraceExporter());
    const sdk = new NodeSDK({
      serviceName: env.OTEL_SERVICE_NAME ?? SERVICE_NAME,
      spanProcessors: [processor],
      metricReaders: [],
      logRecordProcessors: [],
      instrumentations: [],
    });
    sdk.start();
    return new Tracing(sdk, processor, captureContent);
  }

  readonly observer: ExchangeObserver = {
    start: (exchange) => this.#start(exchange),
  };

  #start(exchange: Exchange): ExchangeTap {
    const req = exchange.req;
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    const { path, query } = splitTarget(exchange.target);
    const route = operationFromPath(path) === null ? undefined : routeTemplate(path);
    const secure = 'encrypted' in req.socket;
    const server = this.#tracer.startSpan(
      route === undefined ? exchange.method : `${exchange.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        startTime: epochMs(exchange.startHr),
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: exchange.method,
          [ATTR_URL_PATH]: path,
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
    const spans: Spans = { server, client: null, firstChunkSeen: false };
    this.#spans.set(exchange, spans);
    return {
      upstreamRequest: (headers) => {
        spans.client = this.#startClient(exchange, spans.server);
        stripTraceHeaders(headers);
        const carrier: Record<string, string> = {};
        propagation.inject(trace.setSpan(context.active(), spans.client), carrier);
        for (const [name, value] of Object.entries(carrier)) headers.push(name, value);
      },
      responseChunk: () => firstChunk(spans),
      message: (direction) => {
        if (direction === 'upstream') firstChunk(spans);
      },
    };
  }

  #startClient(exchange: Exchange, server: Span): Span {
    const origin = new URL(exchange.origin ?? 'http://unknown');
    const port = origin.port === '' ? (origin.protocol === 'https:' ? 443 : 80) : Number(origin.port);
    return this.#tracer.startSpan(
      exchange.method,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          [ATTR_HTTP_REQUEST_METHOD]: exchange.method,
          [ATTR_SERVER_ADDRESS]: origin.hostname,
          [ATTR_SERVER_PORT]: port,
          [ATTR_URL_FULL]: `${origin.origin}${exchange.target}`,
        },
      },
      trace.setSpan(ROOT_CONTEXT, server),
    );
  }

  /** The server span's ids, for the audit record's `trace` field. */
  traceOf(exchange: Exchange): { traceId: string; spanId: string } | null {
    const spans = this.#spans.get(exchange);
    if (spans === undefined) return null;
    const { traceId, spanId } = spans.server.spanContext();
    return { traceId, spanId };
  }

  /** Completes the exchange's spans from its audit record. */
  finish(exchange: Exchange, record: AuditRecord): void {
    const spans = this.#spans.get(exchange);
    if (spans === undefined) return;
    this.#spans.delete(exchange);
    const end = epochMs(exchange.endHr ?? performance.now());
    const response = responseAttributes(record);
    const status = record.response.status ?? 0;
    const aborted = record.outcome === 'client_aborted';
    if (spans.client !== null) {
      spans.client.updateName(clientSpanName(exchange.method, record));
      spans.client.setAttributes({ ...response, ...genaiAttributes(record), ...(this.#captureContent ? contentAttributes(record) : {}) });
      // A client span fails on any 4xx/5xx or transport error; a caller-initiated abort is no error.
      if (!aborted && (record.outcome !== 'ok' || status >= 400)) spans.client.setStatus({ code: SpanStatusCode.ERROR });
      spans.client.end(end);
    }
    spans.server.setAttributes(response);
    // A server span fails only on 5xx (4xx is the client's doing).
    if (!aborted && (status >= 500 || record.outcome !== 'ok')) {
      spans.server.setStatus({ code: SpanStatusCode.ERROR, message: record.error?.message });
    }
    spans.server.end(end);
  }

  forceFlush(): Promise<void> {
    return this.#processor.forceFlush();
  }

  shutdown(): Promise<void> {
    return this.#sdk.shutdown();
  }
}
