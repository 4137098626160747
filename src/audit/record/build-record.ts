/**
 * Assembles the audit record (schema 1) of a finished exchange from its facts and captured
 * bodies (capture/facts.ts). Runs after the response has ended: nothing here is on the response path.
 */
import { createHash } from 'node:crypto';
import type { CapturedExchange, ExchangeFacts } from '../../capture/facts.ts';
import { redactQuery } from '../../capture/redact-query.ts';
import { maskKeys, maskKeysOrNull, redactBody } from '../../capture/secrets.ts';
import type { Exchange } from '../../proxy/observer.ts';
import type { WebSocketExchange } from '../../proxy/websocket.ts';
import type { HeaderRedactor } from './identity.ts';
import { AUDIT_SCHEMA_VERSION, type AuditRecord, type CapturedBody, type HeaderMap, type OpenAIInfo } from './record.ts';

export interface RecordContext {
  exchange: Exchange;
  facts: ExchangeFacts;
  /** The bodies as captured; null when they could not be read (the record says `omitted`). */
  captured: CapturedExchange | null;
  redactor: HeaderRedactor;
  trace: { traceId: string; spanId: string } | null;
  usageInjected: boolean;
}

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function emptyBody(contentType: string | null): CapturedBody {
  return { contentType, bytes: 0, body: null, bodyEncoding: 'omitted', truncated: false, sha256: EMPTY_SHA256 };
}

/** The body the proxy itself answered with (errors), as the client received it. */
function proxyErrorResponse(facts: ExchangeFacts): { status: number; headers: HeaderMap; body: CapturedBody } | null {
  const own = facts.proxyResponse;
  if (own === null) return null;
  const bytes = Buffer.byteLength(own.body);
  return {
    status: own.status,
    headers: { ...own.headers, 'content-type': 'application/json', 'content-length': String(bytes) },
    body: {
      contentType: 'application/json',
      bytes,
      body: JSON.parse(own.body) as unknown,
      bodyEncoding: 'json',
      truncated: false,
      sha256: createHash('sha256').update(own.body).digest('hex'),
    },
  };
}

function openaiInfo(facts: ExchangeFacts, usageInjected: boolean): OpenAIInfo | null {
  if (facts.operation === null) return null;
  return {
    operation: facts.operation,
    requestModel: facts.requestModel,
    responseModel: facts.responseModel,
    stream: facts.stream,
    usage: facts.usage,
    finishReasons: facts.finishReasons,
    responseId: facts.responseId,
    outputText: facts.outputText,
    upstreamRequestId: facts.upstreamRequestId,
    organization: facts.organization,
    processingMs: facts.processingMs,
    costUsd: facts.costUsd,
    ...(facts.usageEstimated ? { usageEstimated: true } : {}),
    ...(usageInjected ? { streamUsageInjected: true } : {}),
  };
}

export function buildRecord(ctx: RecordContext): AuditRecord {
  const { exchange, facts, captured, redactor } = ctx;
  const req = exchange.req;
  const request = captured?.request ?? emptyBody(null);
  const response = captured?.response ?? null;
  const responseHeaders = captured?.responseHeaders ?? null;
  const own = proxyErrorResponse(facts);
  const record: AuditRecord = {
    _id: exchange.id,
    schema: AUDIT_SCHEMA_VERSION,
    startedAt: new Date(exchange.startedAt),
    endedAt: new Date(exchange.startedAt + facts.durationMs),
    durationMs: facts.durationMs,
    upstreamTtfbMs: facts.ttfbMs,
    institution: facts.institution,
    institutionSource: facts.institutionSource,
    client: { address: facts.clientAddress, userAgent: req.headers['user-agent'] ?? null },
    apiKey: facts.apiKey,
    upstream: exchange.origin ?? '',
    request: {
      method: exchange.method,
      path: maskKeys(exchange.path),
      query: redactQuery(exchange.query),
      headers: redactor.redactRaw(req.rawHeaders),
      ...redactBody(request),
    },
    response: {
      status: facts.status,
      headers: responseHeaders === null ? (own?.headers ?? {}) : redactor.redact(responseHeaders),
      ...redactBody(response ?? own?.body ?? emptyBody(null)),
      streamed: facts.eventStream,
    },
    openai: openaiInfo(facts, ctx.usageInjected),
    outcome: facts.outcome,
    error: facts.error,
    quota: facts.quota,
    trace: ctx.trace,
  };
  if (exchange.kind === 'websocket') record.websocket = websocketInfo(exchange as WebSocketExchange, facts);
  return record;
}

function websocketInfo(exchange: WebSocketExchange, facts: ExchangeFacts): NonNullable<AuditRecord['websocket']> {
  const counts = facts.websocket;
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
