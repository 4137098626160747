/**
 * Normalises every OpenAI usage shape (chat, completions, embeddings, Responses, Realtime,
 * audio transcription) into the audit record's `Usage`, and sums usages. Shapes: the `usage` of
 * each object in https://platform.openai.com/docs/api-reference (chat, responses, embeddings,
 * audio, realtime-server-events).
 */
import type { Usage } from './body-types.ts';
import { countOrNull, isObject, type JsonObject } from './guards.ts';

// Chat/completions say `prompt_tokens_details`, Responses `input_tokens_details`,
// Realtime `input_token_details`: the first one present wins.
const INPUT_DETAILS = ['prompt_tokens_details', 'input_tokens_details', 'input_token_details'];
const OUTPUT_DETAILS = ['completion_tokens_details', 'output_tokens_details', 'output_token_details'];

/** Returns null when `raw` carries no token count (e.g. transcription `{type: "duration"}`). */
export function normalizeUsage(raw: unknown): Usage | null {
  if (!isObject(raw)) return null;
  const usage: Usage = {
    inputTokens: countOrNull(raw.prompt_tokens) ?? countOrNull(raw.input_tokens),
    outputTokens: countOrNull(raw.completion_tokens) ?? countOrNull(raw.output_tokens),
    totalTokens: countOrNull(raw.total_tokens),
    cachedTokens: detail(raw, INPUT_DETAILS, 'cached_tokens'),
    reasoningTokens: detail(raw, OUTPUT_DETAILS, 'reasoning_tokens'),
  };
  const counted = usage.inputTokens !== null || usage.outputTokens !== null || usage.totalTokens !== null;
  return counted ? usage : null;
}

function detail(raw: JsonObject, containers: readonly string[], field: string): number | null {
  for (const container of containers) {
    const details = raw[container];
    if (isObject(details)) return countOrNull(details[field]);
  }
  return null;
}

/** Field-wise sum; a field unknown on one side takes the other side's value. */
export function addUsage(a: Usage | null, b: Usage | null): Usage | null {
  if (a === null) return b;
  if (b === null) return a;
  return {
    inputTokens: add(a.inputTokens, b.inputTokens),
    outputTokens: add(a.outputTokens, b.outputTokens),
    totalTokens: add(a.totalTokens, b.totalTokens),
    cachedTokens: add(a.cachedTokens, b.cachedTokens),
    reasoningTokens: add(a.reasoningTokens, b.reasoningTokens),
  };
}

function add(x: number | null, y: number | null): number | null {
  if (x === null) return y;
  return y === null ? x : x + y;
}
