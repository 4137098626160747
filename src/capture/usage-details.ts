/**
 * The parts of an OpenAI usage object that are billed apart from text tokens: audio and image
 * tokens, and the duration of audio operations. A companion of usage.ts (the lead merges both
 * into the record's `Usage`: `audioInputTokens`, `audioOutputTokens`, `seconds`).
 * Shapes, from the OpenAI API reference:
 * - Chat Completions: `prompt_tokens_details.{audio_tokens,cached_tokens}`,
 * `completion_tokens_details.audio_tokens`.
 * - Realtime `response.done`: `input_token_details.{audio_tokens,image_tokens,cached_tokens,
 * cached_tokens_details.{text_tokens,audio_tokens,image_tokens}}`, `output_token_details.audio_tokens`.
 * - Transcriptions: `{type: "tokens", input_token_details: {text_tokens, audio_tokens}, ...}` or
 * `{type: "duration", seconds}` (https://platform.openai.com/docs/api-reference/audio/json-object).
 * - Images (gpt-image-1): `input_tokens_details.{text_tokens,image_tokens}`.
 */
import { countOrNull, isObject, type JsonObject } from './guards.ts';

export interface UsageDetails {
  /** Audio tokens among the input tokens. */
  audioInputTokens: number | null;
  /** Audio tokens among the output tokens. */
  audioOutputTokens: number | null;
  /** Audio tokens among the cached input tokens (Realtime). */
  cachedAudioTokens: number | null;
  /** Image tokens among the input tokens (gpt-image-1, Realtime). */
  imageInputTokens: number | null;
  /** Image tokens among the cached input tokens (Realtime). */
  cachedImageTokens: number | null;
  /** Seconds of audio, for operations billed by duration. */
  seconds: number | null;
}

const INPUT_DETAILS = ['prompt_tokens_details', 'input_tokens_details', 'input_token_details'];
const OUTPUT_DETAILS = ['completion_tokens_details', 'output_tokens_details', 'output_token_details'];

/** Null when `raw` is not an object or reports none of these counts. */
export function normalizeUsageDetails(raw: unknown): UsageDetails | null {
  if (!isObject(raw)) return null;
  const input = details(raw, INPUT_DETAILS);
  const output = details(raw, OUTPUT_DETAILS);
  const cached = input !== null && isObject(input.cached_tokens_details) ? input.cached_tokens_details : null;
  const result: UsageDetails = {
    audioInputTokens: input === null ? null : countOrNull(input.audio_tokens),
    audioOutputTokens: output === null ? null : countOrNull(output.audio_tokens),
    cachedAudioTokens: cached === null ? null : countOrNull(cached.audio_tokens),
    imageInputTokens: input === null ? null : countOrNull(input.image_tokens),
    cachedImageTokens: cached === null ? null : countOrNull(cached.image_tokens),
    seconds: raw.type === 'duration' || raw.type === undefined ? countOrNull(raw.seconds) : null,
  };
  return Object.values(result).some((v) => v !== null) ? result : null;
}

/** Field-wise sum (Realtime sessions add up each `response.done`); unknown on one side takes the other. */
export function addUsageDetails(a: UsageDetails | null, b: UsageDetails | null): UsageDetails | null {
  if (a === null) return b;
  if (b === null) return a;
  return {
    audioInputTokens: add(a.audioInputTokens, b.audioInputTokens),
    audioOutputTokens: add(a.audioOutputTokens, b.audioOutputTokens),
    cachedAudioTokens: add(a.cachedAudioTokens, b.cachedAudioTokens),
    imageInputTokens: add(a.imageInputTokens, b.imageInputTokens),
    cachedImageTokens: add(a.cachedImageTokens, b.cachedImageTokens),
    seconds: add(a.seconds, b.seconds),
  };
}

// The first container present wins, as in usage.ts.
function details(raw: JsonObject, containers: readonly string[]): JsonObject | null {
  for (const container of containers) {
    const value = raw[container];
    if (isObject(value)) return value;
  }
  return null;
}

function add(x: number | null, y: number | null): number | null {
  if (x === null) return y;
  return y === null ? x : x + y;
}
