/**
 * Pure builders from an exchange's audit record to span names and attributes: the HTTP server
 * and client conventions and the GenAI inference conventions. No I/O, unit-tested without sockets.
 */
import type { Attributes } from '@opentelemetry/api';
import {
  ATTR_ERROR_TYPE,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
} from '@opentelemetry/semantic-conventions';
import type { AuditRecord } from '../audit/record.ts';
import { genAiOperationName, openaiApiType } from '../capture/operation.ts';
import * as sc from './semconv.ts';

/** A path as a low-cardinality route: segments that look like ids (digits, dashes) become `{id}`. */
export function routeTemplate(path: string): string {
  return path
    .split('/')
    .map((segment) => (/[0-9-]/.test(segment) && segment !== 'v1' ? '{id}' : segment))
    .join('/');
}

/** `chat gpt-4o` for inference calls, per the GenAI conventions; else `{method}`. */
export function clientSpanName(method: string, record: AuditRecord): string {
  const operation = genAiOperationName(record.openai?.operation ?? null);
  if (operation === null) return method;
  const model = record.openai?.requestModel;
  return model ? `${operation} ${model}` : operation;
}

function numberField(body: unknown, ...names: string[]): number | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  for (const name of names) {
    const value = (body as Record<string, unknown>)[name];
    if (typeof value === 'number') return value;
  }
  return undefined;
}

function requestParameters(record: AuditRecord): Attributes {
  const body = record.request.bodyEncoding === 'json' ? record.request.body : undefined;
  const n = numberField(body, 'n');
  return {
    [sc.ATTR_GEN_AI_REQUEST_MAX_TOKENS]: numberField(body, 'max_completion_tokens', 'max_output_tokens', 'max_tokens'),
    [sc.ATTR_GEN_AI_REQUEST_TEMPERATURE]: numberField(body, 'temperature'),
    [sc.ATTR_GEN_AI_REQUEST_TOP_P]: numberField(body, 'top_p'),
    [sc.ATTR_GEN_AI_REQUEST_SEED]: numberField(body, 'seed'),
    [sc.ATTR_GEN_AI_REQUEST_CHOICE_COUNT]: n !== undefined && n !== 1 ? n : undefined,
  };
}

/** GenAI attributes for the CLIENT span; empty for calls the conventions do not cover. */
export function genaiAttributes(record: AuditRecord): Attributes {
  const openai = record.openai;
  const operation = genAiOperationName(openai?.operation ?? null);
  if (openai === null || operation === null) return {};
  const usage = openai.usage;
  const ttfb = record.upstreamTtfbMs;
  return {
    [sc.ATTR_GEN_AI_OPERATION_NAME]: operation,
    [sc.ATTR_GEN_AI_PROVIDER_NAME]: sc.GEN_AI_PROVIDER_NAME_VALUE_OPENAI,
    [sc.ATTR_OPENAI_API_TYPE]: openaiApiType(openai.operation) ?? undefined,
    [sc.ATTR_GEN_AI_REQUEST_MODEL]: openai.requestModel ?? undefined,
    [sc.ATTR_GEN_AI_REQUEST_STREAM]: openai.stream || undefined,
    [sc.ATTR_GEN_AI_RESPONSE_MODEL]: openai.responseModel ?? undefined,
    [sc.ATTR_GEN_AI_RESPONSE_ID]: openai.responseId ?? undefined,
    [sc.ATTR_GEN_AI_RESPONSE_FINISH_REASONS]: openai.finishReasons.length > 0 ? openai.finishReasons : undefined,
    [sc.ATTR_GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]: openai.stream && ttfb !== null ? ttfb / 1000 : undefined,
    [sc.ATTR_GEN_AI_USAGE_INPUT_TOKENS]: usage?.inputTokens ?? undefined,
    [sc.ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: usage?.outputTokens ?? undefined,
    [sc.ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS]: usage?.cachedTokens ?? undefined,
    [sc.ATTR_GEN_AI_USAGE_REASONING_OUTPUT_TOKENS]: usage?.reasoningTokens ?? undefined,
    ...requestParameters(record),
  };
}

/** Opt-in content (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT): inputs and outputs as JSON strings. */
export function contentAttributes(record: AuditRecord): Attributes {
  const body = record.request.bodyEncoding === 'json' ? (record.request.body as Record<string, unknown> | null) : null;
  const input = body?.messages ?? body?.input ?? body?.prompt;
  const output = record.openai?.outputText;
  return {
    [sc.ATTR_GEN_AI_INPUT_MESSAGES]: input === undefined ? undefined : JSON.stringify(input),
    [sc.ATTR_GEN_AI_OUTPUT_MESSAGES]:
      output === null || output === undefined
        ? undefined
        : JSON.stringify([{ role: 'assistant', parts: [{ type: 'text', content: output }], finish_reason: record.openai?.finishReasons[0] ?? null }]),
  };
}

/**
 * `error.type`: the proxy's own error code, else the upstream's OpenAI error code or type,
 * else the HTTP status; undefined for a success.
 */
export function errorType(record: AuditRecord): string | undefined {
  if (record.error !== null) return record.error.type;
  const status = record.response.status ?? 0;
  if (status < 400) return undefined;
  const body = record.response.bodyEncoding === 'json' ? (record.response.body as { error?: { code?: unknown; type?: unknown } } | null) : null;
  const code = body?.error?.code ?? body?.error?.type;
  return typeof code === 'string' && code !== '' ? code : String(status);
}

export function responseAttributes(record: AuditRecord): Attributes {
  return {
    [ATTR_HTTP_RESPONSE_STATUS_CODE]: record.response.status ?? undefined,
    [ATTR_ERROR_TYPE]: errorType(record),
    [sc.ATTR_PROXY_OUTCOME]: record.outcome,
    [sc.ATTR_PROXY_INSTITUTION]: record.institution ?? undefined,
  };
}
