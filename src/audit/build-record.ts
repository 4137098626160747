/**
 * Assembles the audit record (schema 1) of a finished exchange from what its taps captured.
 * Runs after the response has ended: nothing here is on the response path.
 */
import { createHash } from 'node:crypto';
import { describeError } from '../proxy/errors.ts';
import type { Exchange } from '../proxy/observer.ts';
import type { WebSocketExchange } from '../proxy/websocket.ts';
import { requestFactsFromJson, responseFactsFromJson, type ResponseFacts } from '../capture/openai-json.ts';
import { operationFromPath } from '../capture/operation.ts';
import type { ExchangeCapture } from './exchange-capture.ts';
import { redactQuery } from './redact-query.ts';
import { maskKeys, maskKeysOrNull, redactBody } from './secrets.ts';
import type { ApiKeyIdentity, HeaderRedactor } from './identity.ts';
import { AUDIT_SCHEMA_VERSION, type AuditRecord, type CapturedBody, type HeaderMap, type OpenAIInfo } from './record.ts';

export interface RecordContext {
  exchange: Exchange;
  capture: ExchangeCapture;
  redactor: HeaderRedactor;
  apiKey: ApiKeyIdentity | null;
  institution: string | null;
  institutionSource: AuditRecord['institutionSource'];
  trace: { traceId: string; spanId: string } | null;
  usageInjected: boolean;
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function emptyBody(contentType: string | null): CapturedBody {
  return { contentType, bytes: 0, body: null, bodyEncoding: 'omitted', truncated: false, sha256: EMPTY_SHA256 };
}

function header(headers: Record<string, string | string[] | undefined> | null, name: string): string | null {
  const value = headers?.[name];
  return (Array.isArray(value) ? value[0] : value) ?? null;
}

/** The body the proxy itself answered with (errors), as the client received it. */
function proxyErrorResponse(exchange: Exchange): { status: number; headers: HeaderMap; body: CapturedBody } | null {
  if (exchange.error === null || exchange.status !== null) return null;
  // Nothing was sent back to a client that left, or that the shutdown cut off.
  if (exchange.error.outcome === 'client_aborted' || exchange.error.outcome === 'shutdown') return null;
  const { status, body } = describeError(exchange.error);
  const bytes = Buffer.byteLength(body);
  return {
    status,
    headers: { 'content-type': 'application/json', 'content-length': String(bytes) },
    body: {
      contentType: 'application/json',
      bytes,
      body: JSON.parse(body) as unknown,
      bodyEncoding: 'json',
      truncated: false,
      sha256: createHash('sha256').update(body).digest('hex'),
    },
  };
}

function ttfbMs(exchange: Exchange, capture: ExchangeCapture, stream: boolean): number | null {
  const first = stream ? (capture.firstTokenHr ?? capture.firstByteHr) : (capture.firstByteHr ?? exchange.responseHeadHr);
  return first === null ? null : first - exchange.startHr;
}

function processingMs(value: string | null): number | null {
  if (value === null) return null;
  const n = Number(value);
  return Number.isFinite(n) ? n : null;
}

function openaiInfo(ctx: RecordContext, request: CapturedBody, response: CapturedBody | null): OpenAIInfo | null {
  const { exchange, capture } = ctx;
  const operation = operationFromPath(exchange.path);
  if (operation === null) return null;
  const requestFacts = requestFactsFromJson(request.bodyEncoding === 'json' ? request.body : capture.request.fields);
  const multipartModel = request.bodyEncoding === 'multipart' ? capture.request.fields.model : undefined;
  const streamed = capture.stream !== null;
  const facts: ResponseFacts = capture.stream !== null
    ? capture.stream.summary()
    : capture.websocket !== null
      ? { responseModel: null, responseId: null, finishReasons: [], usage: capture.websocket.usage, outputText: null }
      : responseFactsFromJson(response?.bodyEncoding === 'json' ? response.body : (capture.response?.fields ?? null));
  const headers = capture.responseHeaders;
  const realtimeModel = exchange.kind === 'websocket' ? new URLSearchParams(exchange.query ?? '').get('model') : null;
  return {
    operation,
    requestModel: requestFacts.requestModel ?? (typeof multipartModel === 'string' ? multipartModel : null) ?? realtimeModel,
    responseModel: facts.responseModel,
    stream: requestFacts.stream || streamed,
    usage: facts.usage,
    finishReasons: facts.finishReasons,
    responseId: facts.responseId,
    outputText: facts.outputText,
    upstreamRequestId: header(headers, 'x-request-id'),
    organization: header(headers, 'openai-organization'),
    processingMs: processingMs(header(headers, 'openai-processing-ms')),
    ...(ctx.usageInjected ? { streamUsageInjected: true } : {}),
  };
}

export async function buildRecord(ctx: RecordContext): Promise<AuditRecord> {
  const { exchange, capture, redactor } = ctx;
  const req = exchange.req;
  const request = await capture.request.finish();
  const response = capture.response === null ? null : await capture.response.finish();
  const own = proxyErrorResponse(exchange);
  // Facts are read from the bodies as captured; the record stores them redacted (secrets.ts).
  const openai = openaiInfo(ctx, request, response);
  if (openai !== null) openai.outputText = maskKeysOrNull(openai.outputText);
  const durationMs = (exchange.endHr ?? exchange.startHr) - exchange.startHr;
  const stream = capture.stream !== null;
  const record: AuditRecord = {
    _id: exchange.id,
    schema: AUDIT_SCHEMA_VERSION,
    startedAt: new Date(exchange.startedAt),
    endedAt: new Date(exchange.startedAt + durationMs),
    durationMs,
    upstreamTtfbMs: ttfbMs(exchange, capture, stream),
    institution: ctx.institution,
    institutionSource: ctx.institutionSource ?? null,
    client: { address: capture.clientAddress, userAgent: req.headers['user-agent'] ?? null },
    apiKey: ctx.apiKey,
    upstream: exchange.origin ?? '',
    request: {
      method: exchange.method,
      path: maskKeys(exchange.path),
      query: redactQuery(exchange.query),
      headers: redactor.redactRaw(req.rawHeaders),
      ...redactBody(request),
    },
    response: {
      status: exchange.status ?? own?.status ?? null,
      headers: capture.responseHeaders === null ? (own?.headers ?? {}) : redactor.redact(capture.responseHeaders),
      ...redactBody(response ?? own?.body ?? emptyBody(null)),
      streamed: stream,
    },
    openai,
    outcome: exchange.error?.outcome ?? 'ok',
    error: exchange.error === null ? null : { type: exchange.error.code, message: maskKeys(exchange.error.message) },
    trace: ctx.trace,
  };
  if (exchange.kind === 'websocket') record.websocket = websocketInfo(exchange as WebSocketExchange, capture);
  return record;
}

function websocketInfo(exchange: WebSocketExchange, capture: ExchangeCapture): NonNullable<AuditRecord['websocket']> {
  const counts = capture.websocket;
  return {
    messagesIn: counts?.messagesIn ?? 0,
    messagesOut: counts?.messagesOut ?? 0,
    bytesIn: counts?.bytesIn ?? 0,
    bytesOut: counts?.bytesOut ?? 0,
    closeCode: exchange.close?.code ?? null,
    closeReason: maskKeysOrNull(exchange.close?.reason ?? null),
    closedBy: exchange.close?.by ?? null,
  };
}
