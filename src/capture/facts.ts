/**
 * The facts of one finished exchange, computed once by the capture observer and handed to every
 * consumer (the audit recorder, metrics, tracing): what was asked (operation, model, stream,
 * generation parameters), what came back (usage, finish reasons, response id, status, upstream
 * request id) and how it went (outcome, error, timings, bytes, WebSocket counts). Field names
 * follow the audit record's `openai` section (shared/design/audit-record.md).
 */
import { describeError, type QuotaUse } from '../proxy/errors.ts';
import type { ResponseHeaders } from '../proxy/headers.ts';
import type { Exchange } from '../proxy/observer.ts';
import type { Outcome } from '../proxy/outcome.ts';
import type { CapturedBody, Usage } from './body-types.ts';
import type { ExchangeCapture } from './exchange-capture.ts';
import { isObject } from './guards.ts';
import { requestFactsFromJson, responseFactsFromJson, type ResponseFacts } from './openai-json.ts';
import { operationFromPath } from './operation.ts';
import { maskKeys, maskKeysOrNull, redactBody } from './secrets.ts';

/** Who sent an exchange, resolved once per exchange by whoever knows the institutions (runtime.ts). */
export interface ClientIdentity {
  apiKey: { fingerprint: string; hint: string } | null;
  institution: string | null;
  /** How the institution was known (the policy file's contract): null when it was not. */
  institutionSource: 'virtual_key' | 'key' | 'header' | null;
}

export type Identify = (exchange: Exchange) => ClientIdentity;

export interface ExchangeFacts {
  /** The API operation (capture/operation.ts), null off the OpenAI API. */
  operation: string | null;
  requestModel: string | null;
  responseModel: string | null;
  /** The request asked for a stream, or the answer was one. */
  stream: boolean;
  /** The answer was an event stream the proxy parsed (text/event-stream, not compressed). */
  eventStream: boolean;
  usage: Usage | null;
  /** The proxy counted `usage` itself: upstream reported none for a stream (pricing.ts). */
  usageEstimated: boolean;
  /** USD at the price table's rates; null when the model or operation is not priced (pricing.ts). */
  costUsd: number | null;
  finishReasons: string[];
  responseId: string | null;
  /** Keys masked; only when bodies are kept (audit, or span content). */
  outputText: string | null;
  upstreamRequestId: string | null;
  organization: string | null;
  processingMs: number | null;
  /** The request's top-level generation parameters as sent (REQUEST_FIELDS in exchange-capture.ts). */
  requestParameters: Readonly<Record<string, unknown>>;
  /** The request body parsed and redacted: only with span content capture on. */
  requestContent: unknown;
  /** What the client got: upstream's status, else the proxy's own error status; null if nothing was sent. */
  status: number | null;
  /** What upstream answered; null if it never did. */
  upstreamStatus: number | null;
  /** The proxy's own error response, as the client received it. */
  proxyResponse: { status: number; body: string; headers: Readonly<Record<string, string>> } | null;
  outcome: Outcome;
  /** The limit that refused the request (policy/limits.ts), null otherwise. */
  quota: QuotaUse | null;
  /** The proxy's own error: its code and message (keys masked). */
  error: { type: string; message: string } | null;
  /** A 4xx/5xx JSON answer's OpenAI `error.code`, else `error.type`. */
  upstreamErrorCode: string | null;
  durationMs: number;
  ttfbMs: number | null;
  overheadMs: number | null;
  requestBytes: number;
  responseBytes: number;
  clientAddress: string | null;
  websocket: { messagesIn: number; messagesOut: number; bytesIn: number; bytesOut: number } | null;
  apiKey: ClientIdentity['apiKey'];
  institution: string | null;
  institutionSource: ClientIdentity['institutionSource'];
}

/** The bodies as captured, for the audit record: only when some consumer asked for them. */
export interface CapturedExchange {
  request: CapturedBody;
  response: CapturedBody | null;
  responseHeaders: ResponseHeaders | null;
}

function header(headers: ResponseHeaders | null, name: string): string | null {
  const value = headers?.[name];
  return (Array.isArray(value) ? value[0] : value) ?? null;
}

function processingMs(value: string | null): number | null {
  if (value === null) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

/** The body the proxy itself answered with (errors); none for a client that left or a shutdown cut. */
function proxyResponse(exchange: Exchange): ExchangeFacts['proxyResponse'] {
  if (exchange.error === null || exchange.status !== null) return null;
  if (exchange.error.outcome === 'client_aborted' || exchange.error.outcome === 'shutdown') return null;
  const { status, body, headers } = describeError(exchange.error);
  return { status, body, headers };
}

export function upstreamErrorCode(status: number | null, fields: Readonly<Record<string, unknown>>): string | null {
  if (status === null || status < 400) return null;
  const error = fields.error;
  if (!isObject(error)) return null;
  for (const value of [error.code, error.type]) if (typeof value === 'string' && value !== '') return value;
  return null;
}

const NO_PARAMETERS: Readonly<Record<string, unknown>> = Object.freeze({});

export interface FactsOptions {
  identify?: Identify;
  captureContent: boolean;
}

/** Facts from what the core knows alone: what consumers get if reading the capture failed. */
export function exchangeFacts(exchange: Exchange, identity: ClientIdentity | null): ExchangeFacts {
  const own = proxyResponse(exchange);
  const durationMs = (exchange.endHr ?? exchange.startHr) - exchange.startHr;
  return {
    operation: operationFromPath(exchange.path),
    requestModel: null,
    responseModel: null,
    stream: false,
    eventStream: false,
    usage: null,
    usageEstimated: false,
    costUsd: null,
    finishReasons: [],
    responseId: null,
    outputText: null,
    upstreamRequestId: null,
    organization: null,
    processingMs: null,
    requestParameters: NO_PARAMETERS,
    requestContent: undefined,
    status: exchange.status ?? own?.status ?? null,
    upstreamStatus: exchange.status,
    proxyResponse: own,
    outcome: exchange.error?.outcome ?? 'ok',
    quota: exchange.error?.quota ?? null,
    error: exchange.error === null ? null : { type: exchange.error.code, message: maskKeys(exchange.error.message) },
    upstreamErrorCode: null,
    durationMs,
    ttfbMs: exchange.responseHeadHr === null ? null : exchange.responseHeadHr - exchange.startHr,
    overheadMs: exchange.overheadMs,
    requestBytes: 0,
    responseBytes: own === null ? 0 : Buffer.byteLength(own.body),
    clientAddress: exchange.req.socket?.remoteAddress ?? null,
    websocket: null,
    apiKey: identity?.apiKey ?? null,
    institution: identity?.institution ?? null,
    institutionSource: identity?.institutionSource ?? null,
  };
}

/** The facts of a finished exchange from its capture, once its bodies are finished. */
export function factsFromCapture(exchange: Exchange, capture: ExchangeCapture, captured: CapturedExchange, options: FactsOptions): ExchangeFacts {
  const facts = exchangeFacts(exchange, options.identify?.(exchange) ?? null);
  const { request, response, responseHeaders } = captured;
  facts.clientAddress = capture.clientAddress;
  facts.requestBytes = request.bytes;
  if (response !== null) facts.responseBytes = response.bytes;
  const streamed = capture.stream !== null;
  facts.eventStream = streamed;
  const first = streamed ? (capture.firstTokenHr ?? capture.firstByteHr) : (capture.firstByteHr ?? exchange.responseHeadHr);
  facts.ttfbMs = first === null ? null : first - exchange.startHr;
  const requestFields = capture.request.fields;
  const responseFields = capture.response?.fields ?? NO_PARAMETERS;
  facts.upstreamErrorCode = upstreamErrorCode(exchange.status, response?.bodyEncoding === 'json' && isObject(response.body) ? response.body : responseFields);
  const ws = capture.websocket;
  if (ws !== null) facts.websocket = { messagesIn: ws.messagesIn, messagesOut: ws.messagesOut, bytesIn: ws.bytesIn, bytesOut: ws.bytesOut };
  else if (exchange.kind === 'websocket') facts.websocket = { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0 };
  if (facts.operation === null) return facts;

  const requestJson = request.bodyEncoding === 'json' ? request.body : requestFields;
  const requestFacts = requestFactsFromJson(requestJson);
  const multipartModel = request.bodyEncoding !== 'json' ? requestFields.model : undefined;
  const realtimeModel = exchange.kind === 'websocket' ? new URLSearchParams(exchange.query ?? '').get('model') : null;
  const answer: ResponseFacts =
    capture.stream !== null
      ? capture.stream.summary()
      : ws !== null
        ? { responseModel: null, responseId: null, finishReasons: [], usage: ws.usage, outputText: null }
        : responseFactsFromJson(response?.bodyEncoding === 'json' ? response.body : responseFields);
  facts.requestModel = requestFacts.requestModel ?? (typeof multipartModel === 'string' ? multipartModel : null) ?? realtimeModel;
  facts.responseModel = answer.responseModel;
  facts.stream = requestFacts.stream || streamed;
  facts.usage = answer.usage;
  facts.finishReasons = answer.finishReasons;
  facts.responseId = answer.responseId;
  facts.outputText = capture.keepBodies ? maskKeysOrNull(answer.outputText) : null;
  facts.upstreamRequestId = header(responseHeaders, 'x-request-id');
  facts.organization = header(responseHeaders, 'openai-organization');
  facts.processingMs = processingMs(header(responseHeaders, 'openai-processing-ms'));
  facts.requestParameters = requestFields;
  if (options.captureContent && request.bodyEncoding === 'json') facts.requestContent = redactBody(request).body;
  return facts;
}
