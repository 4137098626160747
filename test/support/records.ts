/**
 * The shared fixtures of unit tests that need an audit record or an exchange's facts without
 * running an exchange. Fakes: nothing here went through the proxy; the values are of the shapes
 * the proxy writes (the record schema of src/audit/record/record.ts, a public contract) and the
 * facts come from the capture's own `exchangeFacts`.
 */
import type { IncomingMessage } from 'node:http';
import { AUDIT_SCHEMA_VERSION, type AuditRecord, type OpenAIInfo } from '../../src/audit/record/record.ts';
import { exchangeFacts, type ClientIdentity, type ExchangeFacts } from '../../src/capture/facts.ts';
import { newExchange, type Exchange } from '../../src/proxy/observer.ts';

export interface ChatRecordOptions {
  /** Default `req-${n}`. */
  id?: string;
  /** Default 2025-01-01T00:00:00Z plus n × 1001 ms, so records of different n differ in time. */
  startedAt?: Date;
  /** Default 250.125; `endedAt` is `startedAt` plus its whole milliseconds. */
  durationMs?: number;
  /** Default `univ-a`. */
  institution?: string | null;
  /** The parsed request body; default `{ model: 'gpt-4o-mini', n }`. */
  requestBody?: unknown;
  /** The assistant's answer, in the response body and `openai.outputText`; default `Hello ✓`. */
  answer?: string;
  /** `openai.outputText` when it is not the whole answer (the capture keeps only its first characters). */
  outputText?: string;
}

/** The `openai` member of a non-streamed chat completion's record; `over` replaces members. */
export function openaiInfo(over: Partial<OpenAIInfo> = {}): OpenAIInfo {
  return {
    operation: 'chat.completions',
    requestModel: 'gpt-4o-mini',
    responseModel: 'gpt-4o-mini-2024-07-18',
    stream: false,
    usage: { inputTokens: 12, outputTokens: 30, totalTokens: 42, cachedTokens: 0, reasoningTokens: null },
    finishReasons: ['stop'],
    responseId: 'chatcmpl-0',
    outputText: 'Hello ✓',
    upstreamRequestId: 'req_0',
    organization: 'org-x',
    processingMs: 120,
    ...over,
  };
}

/** A chat completion as the proxy records it: redacted key and header, JSON bodies, usage, a trace. */
export function chatRecord(n: number, o: ChatRecordOptions = {}): AuditRecord {
  const startedAt = o.startedAt ?? new Date(Date.UTC(2025, 0, 1) + n * 1001);
  const durationMs = o.durationMs ?? 250.125;
  const answer = o.answer ?? 'Hello ✓';
  return {
    _id: o.id ?? `req-${n}`,
    schema: AUDIT_SCHEMA_VERSION,
    startedAt,
    endedAt: new Date(startedAt.getTime() + Math.floor(durationMs)),
    durationMs,
    upstreamTtfbMs: 80.5,
    institution: o.institution === undefined ? 'univ-a' : o.institution,
    client: { address: '10.0.0.7', userAgent: 'OpenAI/Python 1.40.0' },
    apiKey: { fingerprint: 'sha256:0123456789abcdef', hint: 'sk-…abcd' },
    upstream: 'https://api.openai.com',
    request: {
      method: 'POST',
      path: '/v1/chat/completions',
      query: null,
      headers: { 'content-type': 'application/json', authorization: '[redacted]' },
      contentType: 'application/json',
      bytes: 120,
      body: o.requestBody === undefined ? { model: 'gpt-4o-mini', n } : o.requestBody,
      bodyEncoding: 'json',
      truncated: false,
      sha256: 'ab'.repeat(32),
    },
    response: {
      status: 200,
      headers: { 'content-type': 'application/json', 'x-request-id': `req_${n}` },
      contentType: 'application/json',
      bytes: 300,
      streamed: false,
      body: { id: `chatcmpl-${n}`, choices: [{ index: 0, message: { role: 'assistant', content: answer } }] },
      bodyEncoding: 'json',
      truncated: false,
      sha256: 'cd'.repeat(32),
    },
    openai: openaiInfo({ responseId: `chatcmpl-${n}`, outputText: o.outputText ?? answer, upstreamRequestId: `req_${n}` }),
    outcome: 'ok',
    error: null,
    trace: { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331' },
  };
}

/**
 * The least a valid record holds: no key, no OpenAI facts, no response body; `request` replaces
 * members of the request (its captured body, typically).
 */
export function bareRecord(id: string, request: Partial<AuditRecord['request']> = {}, at: Date = new Date(0)): AuditRecord {
  return {
    _id: id,
    schema: AUDIT_SCHEMA_VERSION,
    startedAt: at,
    endedAt: at,
    durationMs: 0,
    upstreamTtfbMs: null,
    institution: null,
    client: { address: null, userAgent: null },
    apiKey: null,
    upstream: 'https://api.openai.com',
    request: {
      method: 'POST',
      path: '/v1/chat/completions',
      query: null,
      headers: {},
      contentType: null,
      bytes: 0,
      body: null,
      bodyEncoding: 'omitted',
      truncated: false,
      sha256: '',
      ...request,
    },
    response: { status: 200, headers: {}, contentType: null, bytes: 0, body: null, bodyEncoding: 'omitted', truncated: false, sha256: '', streamed: false },
    openai: null,
    outcome: 'ok',
    error: null,
    trace: null,
  };
}

/** An HTTP exchange as `newExchange` opens it, for a plain request object (no socket behind it). */
export function plainExchange(method = 'POST', url = '/v1/chat/completions'): Exchange {
  const req = { method, url, headers: {}, rawHeaders: [], socket: { remoteAddress: '127.0.0.1' } };
  return newExchange(req as unknown as IncomingMessage, 'http');
}

/**
 * The facts the capture computes (capture/facts.ts) for an exchange with nothing captured, with
 * `over` replacing members: what metrics, tracing and the recorder consume.
 */
export function factsOf(over: Partial<ExchangeFacts> = {}, exchange: Exchange = plainExchange(), identity: ClientIdentity | null = null): ExchangeFacts {
  return { ...exchangeFacts(exchange, identity), ...over };
}
