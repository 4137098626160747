/**
 * The audit record, schema 1: one document per proxied exchange or WebSocket session.
 * The field names are a public contract (shared/design/audit-record.md): add, never rename.
 */

export const AUDIT_SCHEMA_VERSION = 1;

export type BodyEncoding = 'json' | 'text' | 'multipart' | 'omitted';

/**
 * Why a body that was sent is `omitted`: `memory_budget` (MEMORY_BUDGET_BYTES was spent when it
 * arrived), `not_text` (a text or JSON body that is not valid UTF-8, or mostly control characters).
 */
export type OmittedReason = 'memory_budget' | 'not_text';

export type Outcome =
  | 'ok'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_reset'
  | 'client_aborted'
  | 'rejected'
  /** Cut by the proxy's own shutdown, once SHUTDOWN_GRACE_MS had run out. */
  | 'shutdown';

export type HeaderMap = Record<string, string | string[]>;

export type MultipartPart =
  | { name: string; value: string; truncated?: boolean }
  | { name: string; filename: string; contentType: string | null; bytes: number; sha256: string };

/**
 * On a `json` body: the UTF-8 text it was parsed from, exactly as captured. A symbol, so no
 * JSON, EJSON or BSON writer sees it: the journal copies these bytes into the record's line
 * instead of serialising the parsed body again (journal-line.ts).
 */
export const JSON_TEXT: unique symbol = Symbol('JSON text');

export interface CapturedBody {
  contentType: string | null;
  bytes: number;
  body: unknown;
  bodyEncoding: BodyEncoding;
  truncated: boolean;
  sha256: string;
  /** Only on an `omitted` body that was not left out for being empty or binary. */
  omittedReason?: OmittedReason;
  [JSON_TEXT]?: Buffer;
}

export interface Usage {
  inputTokens: number | null;
  outputTokens: number | null;
  totalTokens: number | null;
  cachedTokens: number | null;
  reasoningTokens: number | null;
}

export interface OpenAIInfo {
  operation: string;
  requestModel: string | null;
  responseModel: string | null;
  stream: boolean;
  usage: Usage | null;
  finishReasons: string[];
  responseId: string | null;
  outputText: string | null;
  upstreamRequestId: string | null;
  organization: string | null;
  processingMs: number | null;
  /** STREAM_USAGE=inject asked upstream for the usage chunk the client had not asked for. */
  streamUsageInjected?: boolean;
}

export interface WebSocketInfo {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  closeCode: number | null;
  closeReason: string | null;
  closedBy: 'client' | 'upstream' | 'proxy' | null;
}

export interface AuditRecord {
  _id: string;
  schema: number;
  startedAt: Date;
  endedAt: Date;
  durationMs: number;
  upstreamTtfbMs: number | null;
  institution: string | null;
  /** How `institution` was found (shared/design/policy-file.md, "Records"); always set on records the proxy builds. */
  institutionSource?: 'virtual_key' | 'key' | 'header' | null;
  client: { address: string | null; userAgent: string | null };
  apiKey: { fingerprint: string; hint: string } | null;
  upstream: string;
  request: CapturedBody & { method: string; path: string; query: string | null; headers: HeaderMap };
  response: CapturedBody & { status: number | null; headers: HeaderMap; streamed: boolean };
  openai: OpenAIInfo | null;
  websocket?: WebSocketInfo;
  outcome: Outcome;
  error: { type: string; message: string } | null;
  trace: { traceId: string; spanId: string } | null;
}
