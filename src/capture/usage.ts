/**
 * Normalises every OpenAI usage shape (chat, completions, embeddings, Responses, Realtime,
 * audio transcription) into the audit record's `Usage`, and sums usages. Shapes: the `usage` of
 * each object in https://platform.openai.com/docs/api-reference (chat, responses, embeddings,
 * audio, realtime-server-events). The audio, image and duration parts billed apart from text
 * tokens come from usage-details.ts.
 */
import type { Usage } from './body-types.ts';
import { countOrNull, isObject, type JsonObject } from './guards.ts';
import { addUsageDetails, normalizeUsageDetails, type UsageDetails } from './usage-details.ts';

// Chat/completions say `prompt_tokens_details`, Responses `input_tokens_details`,
// Realtime `input_token_details`: the first one present wins.
const INPUT_DETAILS = ['prompt_tokens_details', 'input_tokens_details', 'input_token_details'];
const OUTPUT_DETAILS = ['completion_tokens_details', 'output_tokens_details', 'output_token_details'];
const DETAIL_FIELDS = ['audioInputTokens', 'audioOutputTokens', 'cachedAudioTokens', 'imageInputTokens', 'cachedImageTokens', 'seconds'] as const;

/**
 * Returns null when `raw` carries neither a token count nor a duration. A transcription's
 * `{type: "duration", seconds}` gives a usage with null token counts and `seconds`.
 */
export function normalizeUsage(raw: unknown): Usage | null {
  if (!isObject(raw)) return null;
  const usage: Usage = {
    inputTokens: countOrNull(raw.prompt_tokens) ?? countOrNull(raw.input_tokens),
    outputTokens: countOrNull(raw.completion_tokens) ?? countOrNull(raw.output_tokens),
    totalTokens: countOrNull(raw.total_tokens),
    cachedTokens: detail(raw, INPUT_DETAILS, 'cached_tokens'),
    reasoningTokens: detail(raw, OUTPUT_DETAILS, 'reasoning_tokens'),
  };
  withDetails(usage, normalizeUsageDetails(raw));
  const counted = usage.inputTokens !== null || usage.outputTokens !== null || usage.totalTokens !== null || usage.seconds !== undefined;
  return counted ? usage : null;
}

function detail(raw: JsonObject, containers: readonly string[], field: string): number | null {
  for (const container of containers) {
    const details = raw[container];
    if (isObject(details)) return countOrNull(details[field]);
  }
  return null;
}

/** Field-wise sum (a Realtime session adds up each `response.done`); a field unknown on one side takes the other side's value. */
export function addUsage(a: Usage | null, b: Usage | null): Usage | null {
  if (a === null) return b;
  if (b === null) return a;
  const sum: Usage = {
    inputTokens: add(a.inputTokens, b.inputTokens),
    outputTokens: add(a.outputTokens, b.outputTokens),
    totalTokens: add(a.totalTokens, b.totalTokens),
    cachedTokens: add(a.cachedTokens, b.cachedTokens),
    reasoningTokens: add(a.reasoningTokens, b.reasoningTokens),
  };
  withDetails(sum, addUsageDetails(detailsOf(a), detailsOf(b)));
  return sum;
}

/** The parts of `usage` billed apart from text (null when it has none). */
export function detailsOf(usage: Usage): UsageDetails | null {
  let any = false;
  const details: UsageDetails = { audioInputTokens: null, audioOutputTokens: null, cachedAudioTokens: null, imageInputTokens: null, cachedImageTokens: null, seconds: null };
  for (const field of DETAIL_FIELDS) {
    const value = usage[field];
    if (value !== undefined) {
      details[field] = value;
      any = true;
    }
  }
  return any ? details : null;
}

// Only the parts reported are added: a record carries no field the API did not report.
function withDetails(usage: Usage, details: UsageDetails | null): void {
  if (details === null) return;
  for (const field of DETAIL_FIELDS) {
    const value = details[field];
    if (value !== null) usage[field] = value;
  }
}

function add(x: number | null, y: number | null): number | null {
  if (x === null) return y;
  return y === null ? x : x + y;
}
