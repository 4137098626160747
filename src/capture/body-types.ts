/**
 * What the capture layer produces from the bytes of an exchange: captured bodies, multipart
 * parts and token usage. The audit record (audit/record/record.ts) stores them as they are.
 */

export type BodyEncoding = 'json' | 'text' | 'multipart' | 'omitted';

/**
 * Why a body that was sent is `omitted`: `memory_budget` (MEMORY_BUDGET_BYTES was spent when it
 * arrived), `not_text` (a text or JSON body that is not valid UTF-8, or mostly control characters).
 */
export type OmittedReason = 'memory_budget' | 'not_text';

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

/** Token usage as OpenAI reports it, normalised across the APIs (usage.ts). */
export interface Usage {
  inputTokens: number | null;
  outputTokens: number | null;
  totalTokens: number | null;
  cachedTokens: number | null;
  reasoningTokens: number | null;
  // Present only where the API reports them (usage-details.ts; policy-file contract, "Records").
  /** Audio tokens among the input tokens (gpt-4o audio, Realtime, gpt-4o-transcribe). */
  audioInputTokens?: number;
  /** Audio tokens among the output tokens. */
  audioOutputTokens?: number;
  /** Audio tokens among the cached input tokens (Realtime). */
  cachedAudioTokens?: number;
  /** Image tokens among the input tokens (gpt-image-1, Realtime). */
  imageInputTokens?: number;
  /** Image tokens among the cached input tokens (Realtime). */
  cachedImageTokens?: number;
  /** Seconds of audio, for operations billed by duration (transcriptions: `usage.type: "duration"`). */
  seconds?: number;
}
