/**
 * What the capture tap has seen of one exchange so far: body captures, SSE understanding, timings
 * and, for WebSocket sessions, message counts and Realtime usage. Per-chunk work is a hash update
 * and a capped copy (only when bodies are kept), the field scanner past the cap or without a copy,
 * and, for SSE only, the incremental parser.
 */
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Usage } from './body-types.ts';
import { BodyCapture } from './body-capture.ts';
import { OpenAIStreamAccumulator } from './openai-stream.ts';
import { addRealtimeUsageFromMessage } from './realtime.ts';
import { SseParser } from './sse.ts';
import type { MemoryAccount } from '../memory-budget.ts';
import type { ResponseHeaders } from '../proxy/headers.ts';

/**
 * The request members the facts read: the model, the stream flag and the generation parameters
 * the GenAI conventions name (gen_ai.request.*).
 */
export const REQUEST_FIELDS = [
  'model', 'stream', 'max_completion_tokens', 'max_output_tokens', 'max_tokens', 'temperature', 'top_p',
  'frequency_penalty', 'presence_penalty', 'stop', 'seed', 'n',
] as const;
/** The response members the facts read when no copy is kept (or past the cap). */
const RESPONSE_FIELDS = ['model', 'id', 'usage', 'object', 'status', 'choices', 'error'] as const;
const RESPONSE_DONE = Buffer.from('response.done');

function single(value: string | string[] | undefined): string | null {
  return (Array.isArray(value) ? value[0] : value) ?? null;
}

export interface WebSocketCounts {
  messagesIn: number;
  messagesOut: number;
  bytesIn: number;
  bytesOut: number;
  usage: Usage | null;
}

export class ExchangeCapture {
  /** Read at the start: a request abandoned mid-body is detached from its socket. */
  readonly clientAddress: string | null;
  readonly request: BodyCapture;
  response: BodyCapture | null = null;
  responseHeaders: ResponseHeaders | null = null;
  stream: OpenAIStreamAccumulator | null = null;
  firstByteHr: number | null = null;
  firstTokenHr: number | null = null;
  websocket: WebSocketCounts | null = null;
  /** Whether the bodies are copied (for the audit record, or span content); else only facts are learnt. */
  readonly keepBodies: boolean;
  readonly #maxBytes: number;
  readonly #memory: MemoryAccount | undefined;
  #sse: SseParser | null = null;

  constructor(req: IncomingMessage, maxBytes: number, memory?: MemoryAccount, keepBodies = true) {
    const requestHeaders = req.headers;
    this.#maxBytes = maxBytes;
    this.#memory = memory;
    this.keepBodies = keepBodies;
    this.clientAddress = req.socket.remoteAddress ?? null;
    this.request = new BodyCapture({
      contentType: single(requestHeaders['content-type']),
      contentEncoding: single(requestHeaders['content-encoding']),
      maxBytes,
      fields: REQUEST_FIELDS,
      memory,
      keep: keepBodies,
    });
  }

  responseHead(headers: ResponseHeaders): void {
    this.responseHeaders = headers;
    const contentType = single(headers['content-type']);
    const contentEncoding = single(headers['content-encoding']);
    this.response = new BodyCapture({ contentType, contentEncoding, maxBytes: this.#maxBytes, fields: RESPONSE_FIELDS, memory: this.#memory, keep: this.keepBodies });
    // SSE is parsed as it passes so usage is found however far past the capture cap it lies.
    // A compressed event stream (OpenAI sends none) is captured but not parsed.
    if (contentType?.toLowerCase().startsWith('text/event-stream') && contentEncoding === null) {
      // Without body copies the output text is not assembled: only span content and records show it.
      const stream = new OpenAIStreamAccumulator({ onFirstToken: () => (this.firstTokenHr = performance.now()), maxOutputChars: this.keepBodies ? undefined : 0 });
      this.stream = stream;
      this.#sse = new SseParser((event, data) => stream.push(event, data));
    }
  }

  responseChunk(chunk: Buffer): void {
    this.firstByteHr ??= performance.now();
    this.response?.push(chunk);
    this.#sse?.push(chunk);
  }

  responseEnd(): void {
    this.#sse?.end();
  }

  /** Gives the body copies' bytes back to the memory budget (the record has been handed on). */
  release(): void {
    this.request.release();
    this.response?.release();
  }

  message(direction: 'client' | 'upstream', data: Buffer): void {
    const counts = (this.websocket ??= { messagesIn: 0, messagesOut: 0, bytesIn: 0, bytesOut: 0, usage: null });
    if (direction === 'client') {
      counts.messagesIn++;
      counts.bytesIn += data.length;
      return;
    }
    this.firstByteHr ??= performance.now();
    counts.messagesOut++;
    counts.bytesOut += data.length;
    // Only the rare response.done event is worth parsing; audio deltas are large and many.
    if (data.includes(RESPONSE_DONE)) counts.usage = addRealtimeUsageFromMessage(counts.usage, data.toString('utf8'));
  }
}
