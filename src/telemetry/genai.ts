/**
 * Pure builders from an exchange's facts (capture/facts.ts) to span names and attributes: the HTTP
 * server and client conventions and the GenAI inference conventions. No I/O, unit-tested without sockets.
 */
import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
} from '@opentelemetry/semantic-conventions';
import type { ExchangeFacts } from '../capture/facts.ts';
import { genAiOperationName, openaiApiType } from '../capture/operation.ts';
import * as sc from './semconv.ts';
import { errorTypeOf, operationFailed } from './error-type.ts';

// The routes of recent paths. A few paths carry nearly all the traffic; ids in paths make their
// number unbounded, so the memo is emptied when full.
const routes = new Map<string, string>();
const MAX_ROUTES = 256;

/** A path as a low-cardinality route: segments that look like ids (digits, dashes) become `{id}`; `v1`, `v2`… stay. */
export function routeTemplate(path: string): string {
  let route = routes.get(path);
  if (route === undefined) {
    route = path
      .split('/')
      .map((segment) => (/[0-9-]/.test(segment) && !/^v\d+$/.test(segment) ? '{id}' : segment))
      .join('/');
    if (routes.size >= MAX_ROUTES) routes.clear();
    routes.set(path, route);
  }
  return route;
}

/** `chat gpt-4o` for inference calls, per the GenAI conventions; else `{method}`. */
export function clientSpanName(method: string, facts: ExchangeFacts): string {
  const operation = genAiOperationName(facts.operation);
  if (operation === null) return method;
  const model = facts.requestModel;
  return model ? `${operation} ${model}` : operation;
}

function field(body: unknown, name: string): unknown {
  return typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[name] : undefined;
}

function numberField(body: unknown, ...names: string[]): number | undefined {
  for (const name of names) {
    const value = field(body, name);
    if (typeof value === 'number') return value;
  }
  return undefined;
}

function stopSequences(body: unknown): string[] | undefined {
  const stop = field(body, 'stop');
  if (typeof stop === 'string') return [stop];
  return Array.isArray(stop) && stop.length > 0 && stop.every((s) => typeof s === 'string') ? stop : undefined;
}

function requestParameters(facts: ExchangeFacts): Attributes {
  const body = facts.requestParameters;
  const n = numberField(body, 'n');
  return {
    [sc.ATTR_GEN_AI_REQUEST_MAX_TOKENS]: numberField(body, 'max_completion_tokens', 'max_output_tokens', 'max_tokens'),
    [sc.ATTR_GEN_AI_REQUEST_TEMPERATURE]: numberField(body, 'temperature'),
    [sc.ATTR_GEN_AI_REQUEST_TOP_P]: numberField(body, 'top_p'),
    [sc.ATTR_GEN_AI_REQUEST_FREQUENCY_PENALTY]: numberField(body, 'frequency_penalty'),
    [sc.ATTR_GEN_AI_REQUEST_PRESENCE_PENALTY]: numberField(body, 'presence_penalty'),
    [sc.ATTR_GEN_AI_REQUEST_STOP_SEQUENCES]: stopSequences(body),
    [sc.ATTR_GEN_AI_REQUEST_SEED]: numberField(body, 'seed'),
    [sc.ATTR_GEN_AI_REQUEST_CHOICE_COUNT]: n !== undefined && n !== 1 ? n : undefined,
  };
}

/** GenAI attributes for the CLIENT span; empty for calls the conventions do not cover. */
export function genaiAttributes(facts: ExchangeFacts): Attributes {
  const operation = genAiOperationName(facts.operation);
  if (facts.operation === null || operation === null) return {};
  const usage = facts.usage;
  const ttfb = facts.ttfbMs;
  return {
    [sc.ATTR_GEN_AI_OPERATION_NAME]: operation,
    [sc.ATTR_GEN_AI_PROVIDER_NAME]: sc.GEN_AI_PROVIDER_NAME_VALUE_OPENAI,
    [sc.ATTR_OPENAI_API_TYPE]: openaiApiType(facts.operation) ?? undefined,
    [sc.ATTR_GEN_AI_REQUEST_MODEL]: facts.requestModel ?? undefined,
    [sc.ATTR_GEN_AI_REQUEST_STREAM]: facts.stream || undefined,
    [sc.ATTR_GEN_AI_RESPONSE_MODEL]: facts.responseModel ?? undefined,
    [sc.ATTR_GEN_AI_RESPONSE_ID]: facts.responseId ?? undefined,
    [sc.ATTR_GEN_AI_RESPONSE_FINISH_REASONS]: facts.finishReasons.length > 0 ? facts.finishReasons : undefined,
    [sc.ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]: facts.stream && ttfb !== null ? ttfb / 1000 : undefined,
    [sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS]: usage?.inputTokens ?? undefined,
    [sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: usage?.outputTokens ?? undefined,
    [sc.ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS]: usage?.cachedTokens ?? undefined,
    [sc.ATTR_GEN_AI_USAGE_REASONING_OUTPUT_TOKENS]: usage?.reasoningTokens ?? undefined,
    ...requestParameters(facts),
  };
}

// ---------- opt-in content, in the semconv message schema (gen-ai-input-messages.json) ----------

type Part = Record<string, unknown> & { type: string };
interface Message {
  role: string;
  parts: Part[];
  finish_reason?: string | null;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const text = (content: string): Part => ({ type: 'text', content });

/** One OpenAI content part (chat or Responses flavour) as a semconv part. */
function contentPart(part: unknown): Part {
  if (typeof part === 'string') return text(part);
  if (!isRecord(part) || typeof part.type !== 'string') return { type: 'unknown' };
  if (typeof part.text === 'string') return text(part.text); // text, input_text, output_text
  if (part.type === 'refusal' && typeof part.refusal === 'string') return text(part.refusal);
  if (part.type === 'image_url' && isRecord(part.image_url) && typeof part.image_url.url === 'string') {
    return { type: 'uri', modality: 'image', uri: part.image_url.url };
  }
  if (part.type === 'input_image' && typeof part.image_url === 'string') return { type: 'uri', modality: 'image', uri: part.image_url };
  if (part.type === 'input_audio' && isRecord(part.input_audio)) return { type: 'blob', modality: 'audio', content: part.input_audio.data };
  return { ...part, type: part.type };
}

function contentParts(content: unknown): Part[] {
  if (content === null || content === undefined) return [];
  return Array.isArray(content) ? content.map(contentPart) : [contentPart(content)];
}

/** A chat message or a Responses input item. */
function message(item: unknown): Message {
  if (typeof item === 'string') return { role: 'user', parts: [text(item)] };
  if (!isRecord(item)) return { role: 'user', parts: [] };
  if (item.type === 'function_call') {
    return { role: 'assistant', parts: [{ type: 'tool_call', id: item.call_id, name: item.name, arguments: item.arguments }] };
  }
  if (item.type === 'function_call_output') {
    return { role: 'tool', parts: [{ type: 'tool_call_response', id: item.call_id, response: item.output }] };
  }
  const role = typeof item.role === 'string' ? item.role : 'user';
  if (role === 'tool') return { role, parts: [{ type: 'tool_call_response', id: item.tool_call_id, response: item.content }] };
  const parts = contentParts(item.content);
  if (Array.isArray(item.tool_calls)) {
    for (const call of item.tool_calls) {
      const fn = isRecord(call) && isRecord(call.function) ? call.function : {};
      parts.push({ type: 'tool_call', id: isRecord(call) ? call.id : undefined, name: fn.name, arguments: fn.arguments });
    }
  }
  return { role, parts };
}

/** messages (chat), input (Responses, embeddings) or prompt (legacy completions), as semconv messages. */
function inputMessages(body: unknown): Message[] | undefined {
  const input = field(body, 'messages') ?? field(body, 'input') ?? field(body, 'prompt');
  if (input === undefined || input === null) return undefined;
  if (!Array.isArray(input)) return [message(input)];
  // A list of strings (legacy prompts, embedding inputs) is one user message each; token arrays are skipped.
  return input.filter((item) => typeof item !== 'number').map(message);
}

/**
 * Opt-in content (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT): inputs, outputs and the
 * Responses `instructions` as JSON strings in the GenAI message schema; empty for non-GenAI calls.
 */
export function contentAttributes(facts: ExchangeFacts): Attributes {
  if (genAiOperationName(facts.operation) === null) return {};
  const body = facts.requestContent;
  const input = inputMessages(body);
  const instructions = field(body, 'instructions');
  const output = facts.outputText;
  return {
    [sc.ATTR_GEN_AI_INPUT_MESSAGES]: input === undefined ? undefined : JSON.stringify(input),
    [sc.ATTR_GEN_AI_SYSTEM_INSTRUCTIONS]: typeof instructions === 'string' ? JSON.stringify([text(instructions)]) : undefined,
    [sc.ATTR_GEN_AI_OUTPUT_MESSAGES]:
      output === null || output === undefined
        ? undefined
        : JSON.stringify([{ role: 'assistant', parts: [text(output)], finish_reason: facts.finishReasons[0] ?? null }]),
  };
}

// ---------- errors and span status ----------

/** Whether a span failed, with the attributes that say how it ended. */
export interface SpanOutcome {
  error: boolean;
  message: string | undefined;
  attributes: Attributes;
}

function outcome(facts: ExchangeFacts, status: number | null, failed: boolean): SpanOutcome {
  // A hang-up is no error of its own: if the span failed anyway, the status says why (errorTypeOf).
  const error = failed ? errorTypeOf(facts) : undefined;
  return {
    error: error !== undefined,
    message: error === undefined ? undefined : facts.error?.message,
    attributes: {
      [ATTR_HTTP_RESPONSE_STATUS_CODE]: status ?? undefined,
      [ATTR_ERROR_TYPE]: error,
      [sc.ATTR_PROXY_OUTCOME]: facts.outcome,
      [sc.ATTR_PROXY_INSTITUTION]: facts.institution ?? undefined,
    },
  };
}

/**
 * The SERVER span: what the caller got. Fails on 5xx or a broken exchange; not on 4xx or a
 * refusal (the caller's doing), nor when the caller hung up (no error, per the HTTP conventions).
 */
export function serverOutcome(facts: ExchangeFacts): SpanOutcome {
  const status = facts.status;
  const broken = facts.outcome !== 'ok' && facts.outcome !== 'rejected' && facts.outcome !== 'client_aborted';
  return outcome(facts, status, (status ?? 0) >= 500 || broken);
}

/**
 * The CLIENT span: the upstream call. `upstreamStatus` is what upstream answered (null if it never
 * did: the proxy's own 502 is not upstream's status). Fails on any 4xx/5xx or transport error;
 * a caller-initiated abort is no error.
 */
export function clientOutcome(facts: ExchangeFacts, upstreamStatus: number | null): SpanOutcome {
  // The facts' status is upstream's whenever upstream answered; when the proxy answered in its
  // stead the exchange broke, which fails the span either way: the metric's rule, operationFailed.
  return outcome(facts, upstreamStatus, operationFailed(facts) || (upstreamStatus ?? 0) >= 400);
}
