/**
 * Accumulates what the audit record needs from an OpenAI SSE stream: chat.completion.chunk and
 * legacy text_completion chunks, or Responses API events. Fed by `SseParser`, one event at a time.
 * Shapes: https://platform.openai.com/docs/api-reference/chat-streaming,
 * https://platform.openai.com/docs/api-reference/responses-streaming
 */
import type { Usage } from './body-types.ts';
import { isObject, parseJson, stringOrNull, type JsonObject } from './guards.ts';
import { OutputText } from './output-text.ts';
import { normalizeUsage } from './usage.ts';

export interface StreamError {
  /** `error.code`, else `error.type`, else `error`: low-cardinality, usable as `error.type`. */
  type: string;
  message: string;
}

export interface StreamSummary {
  responseModel: string | null;
  responseId: string | null;
  finishReasons: string[];
  usage: Usage | null;
  outputText: string | null;
  outputTruncated: boolean;
  error: StreamError | null;
  firstTokenSeen: boolean;
  /** `[DONE]` or a terminal Responses event arrived: false means the stream was cut short. */
  done: boolean;
}

export interface StreamAccumulatorOptions {
  /** Cap on `outputText`; usage and finish reasons are still found past it. */
  maxOutputChars?: number;
  /** Called once, synchronously, at the first delta carrying model output: take the TTFT timestamp here. */
  onFirstToken?: () => void;
}

const DEFAULT_MAX_OUTPUT_CHARS = 1024 * 1024;
const TERMINAL_EVENTS = new Set(['response.completed', 'response.incomplete', 'response.failed']);
// Deltas of model output (not reasoning): where time to first token is measured.
const OUTPUT_DELTAS = new Set([
  'response.output_text.delta',
  'response.refusal.delta',
  'response.function_call_arguments.delta',
  'response.audio.delta',
  'response.audio.transcript.delta',
]);

export class OpenAIStreamAccumulator {
  readonly #onFirstToken: (() => void) | undefined;
  readonly #text: OutputText;
  readonly #finishReasons = new Map<number, string>();
  #responseModel: string | null = null;
  #responseId: string | null = null;
  #usage: Usage | null = null;
  #error: StreamError | null = null;
  #firstTokenSeen = false;
  #done = false;

  constructor(options: StreamAccumulatorOptions = {}) {
    this.#onFirstToken = options.onFirstToken;
    this.#text = new OutputText(options.maxOutputChars ?? DEFAULT_MAX_OUTPUT_CHARS);
  }

  get firstTokenSeen(): boolean {
    return this.#firstTokenSeen;
  }

  /** One dispatched SSE event, with the `SseListener` signature. */
  push(event: string | null, data: string): void {
    if (data === '[DONE]') {
      this.#done = true;
      return;
    }
    const json = parseJson(data);
    if (!isObject(json)) {
      if (event === 'error') this.#recordError({ message: data });
      return;
    }
    const type = stringOrNull(json.type) ?? event;
    if (event === 'error' || type === 'error' || isObject(json.error)) this.#recordError(json);
    else if (type?.startsWith('response.') === true) this.#onResponsesEvent(type, json);
    else this.#onChunk(json);
  }

  summary(): StreamSummary {
    const indexes = [...this.#finishReasons.keys()].sort((a, b) => a - b);
    return {
      responseModel: this.#responseModel,
      responseId: this.#responseId,
      finishReasons: indexes.map((index) => this.#finishReasons.get(index) ?? ''),
      usage: this.#usage,
      outputText: this.#text.text(),
      outputTruncated: this.#text.truncated,
      error: this.#error,
      firstTokenSeen: this.#firstTokenSeen,
      done: this.#done,
    };
  }

  // chat.completion.chunk or text_completion; the include_usage chunk has `choices: []`.
  #onChunk(chunk: JsonObject): void {
    this.#noteIdentity(chunk);
    this.#usage = normalizeUsage(chunk.usage) ?? this.#usage;
    if (!Array.isArray(chunk.choices)) return;
    for (const choice of chunk.choices) {
      if (isObject(choice)) this.#onChoice(choice);
    }
  }

  #onChoice(choice: JsonObject): void {
    const index = typeof choice.index === 'number' ? choice.index : 0;
    const reason = stringOrNull(choice.finish_reason);
    if (reason !== null) this.#finishReasons.set(index, reason);
    const delta = isObject(choice.delta) ? choice.delta : null;
    const text = stringOrNull(delta === null ? choice.text : delta.content);
    if (text !== null && text !== '') {
      this.#firstToken();
      this.#text.add(index, text);
    } else if (delta !== null && (isNonEmptyString(delta.refusal) || Array.isArray(delta.tool_calls))) {
      this.#firstToken();
    }
  }

  #onResponsesEvent(type: string, event: JsonObject): void {
    if (isObject(event.response)) {
      this.#onResponseObject(type, event.response);
      return;
    }
    if (!OUTPUT_DELTAS.has(type) || !isNonEmptyString(event.delta)) return;
    this.#firstToken();
    if (type === 'response.output_text.delta') this.#text.add(0, event.delta);
  }

  // response.created / in_progress / queued carry the response so far; the terminal ones its outcome.
  #onResponseObject(type: string, response: JsonObject): void {
    this.#noteIdentity(response);
    if (!TERMINAL_EVENTS.has(type)) return;
    this.#done = true;
    this.#usage = normalizeUsage(response.usage) ?? this.#usage;
    const status = stringOrNull(response.status);
    if (status !== null) this.#finishReasons.set(0, status);
    if (isObject(response.error)) this.#recordError(response);
  }

  #noteIdentity(source: JsonObject): void {
    this.#responseId ??= stringOrNull(source.id);
    this.#responseModel ??= stringOrNull(source.model);
  }

  // Keeps the first error: later ones are usually consequences of it.
  #recordError(source: JsonObject): void {
    if (this.#error !== null) return;
    const error = isObject(source.error) ? source.error : source;
    const type = stringOrNull(error.code) ?? stringOrNull(error.type) ?? 'error';
    this.#error = { type, message: stringOrNull(error.message) ?? '' };
  }

  #firstToken(): void {
    if (this.#firstTokenSeen) return;
    this.#firstTokenSeen = true;
    this.#onFirstToken?.();
  }
}

function isNonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value !== '';
}
