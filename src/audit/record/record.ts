/**
 * The audit record, schema 1: one document per proxied exchange or WebSocket session.
 * The field names are a public contract (shared/design/audit-record.md): add, never rename.
 */

export const AUDIT_SCHEMA_VERSION = 1;

import type { Outcome } from '../../proxy/outcome.ts';
import type { CapturedBody, Usage } from '../../capture/body-types.ts';

// Produced by the capture layer and the proxy; re-exported, as the record is where readers look.
export { JSON_TEXT, type BodyEncoding, type CapturedBody, type MultipartPart, type OmittedReason, type Usage } from '../../capture/body-types.ts';
export type { Outcome } from '../../proxy/outcome.ts';

export type HeaderMap = Record<string, string | string[]>;

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
  /** USD at the price table's rates; null when the model or operation is not priced. Always set on records the proxy builds. */
  costUsd?: number | null;
  /** The proxy counted `usage` itself (token-estimate.ts): upstream reported none for a stream. */
  usageEstimated?: boolean;
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
  /** The limit that refused the request (policy-file contract, "Records"); null otherwise. Always set on records the proxy builds. */
  quota?: { window: string; kind: string; limit: number; used: number } | null;
  trace: { traceId: string; spanId: string } | null;
}
