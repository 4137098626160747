/**
 * What an exchange cost in USD, from its operation, model, usage and a few request facts,
 * at the prices of the table (prices.ts). Null when the model or the operation is not priced
 * or the usage that prices it is unknown: a record says "unknown" rather than a wrong figure.
 */
import { findModelPrice, shippedPrices, type ModelPrice, type PriceTable, type TokenPrices } from './prices.ts';

/** The record's `Usage` with the fields of usage-details.ts; absent means unknown. */
export interface CostUsage {
  inputTokens: number | null;
  outputTokens: number | null;
  cachedTokens?: number | null;
  audioInputTokens?: number | null;
  audioOutputTokens?: number | null;
  cachedAudioTokens?: number | null;
  imageInputTokens?: number | null;
  cachedImageTokens?: number | null;
  seconds?: number | null;
}

/** What the request or response says that usage does not (cost-facts.ts reads them). */
export interface CostFacts {
  /** audio.speech: characters of the request's `input`. */
  inputCharacters?: number | null;
  /** images.*: images returned (`data.length`), else `n` asked for, else 1. */
  imageCount?: number | null;
  n?: number | null;
  /** images.*: `size` and `quality` asked for (defaults: 1024x1024, standard). */
  size?: string | null;
  quality?: string | null;
  /** audio.*: seconds of audio when usage has none (a verbose_json `duration`). */
  audioSeconds?: number | null;
  /** The `service_tier` the response says served it: `priority` (or `fast`) and `flex` have their own rates. */
  serviceTier?: string | null;
}

const TOKEN_OPERATIONS = new Set(['chat.completions', 'responses', 'responses.compact', 'completions', 'embeddings', 'realtime']);
const AUDIO_IN_OPERATIONS = new Set(['audio.transcriptions', 'audio.translations']);
const IMAGE_OPERATIONS = new Set(['images.generations', 'images.edits', 'images.variations']);
const FREE_OPERATIONS = new Set(['moderations']);

/** Whether OpenAI bills the operation at all (others never get a cost, and are not "unknown"). */
export function isPricedOperation(operation: string | null): boolean {
  if (operation === null) return false;
  return (
    TOKEN_OPERATIONS.has(operation) ||
    AUDIO_IN_OPERATIONS.has(operation) ||
    IMAGE_OPERATIONS.has(operation) ||
    FREE_OPERATIONS.has(operation) ||
    operation === 'audio.speech'
  );
}

/**
 * USD for one exchange (a Realtime session: its summed usage), rounded to 1e-10 USD; null
 * when it cannot be priced. `model` is the response's model, else the request's.
 */
export function costUsd(
  operation: string | null,
  model: string | null,
  usage: CostUsage | null,
  facts: CostFacts = {},
  table: PriceTable = shippedPrices(),
): number | null {
  if (operation === null) return null;
  // The moderation endpoint is free of charge, whatever the model.
  if (FREE_OPERATIONS.has(operation)) return 0;
  if (!isPricedOperation(operation)) return null;
  const price = findModelPrice(table, model);
  if (price === null) return null;
  if (price.free === true) return 0;
  return rounded(priceOf(operation, price, usage, facts));
}

function priceOf(operation: string, price: ModelPrice, usage: CostUsage | null, facts: CostFacts): number | null {
  if (TOKEN_OPERATIONS.has(operation)) return tokenCost(price, usage, facts.serviceTier ?? null);
  if (AUDIO_IN_OPERATIONS.has(operation)) return audioInCost(price, usage, facts);
  if (operation === 'audio.speech') return speechCost(price, usage, facts);
  return imageCost(price, usage, facts);
}

/**
 * Token-billed operations. Input tokens include audio, image and cached tokens (OpenAI reports
 * them as parts of `prompt_tokens` / `input_tokens`), so each part is taken out of the text and
 * priced at its own rate; a part without a rate of its own is priced as text. Reasoning tokens
 * are part of the output tokens and priced as output.
 */
export function tokenCost(price: ModelPrice, usage: CostUsage | null, serviceTier: string | null = null): number | null {
  if (usage === null || (usage.inputTokens === null && usage.outputTokens === null)) return null;
  const inputTokens = usage.inputTokens ?? 0;
  const outputTokens = usage.outputTokens ?? 0;
  const rates = ratesFor(price, inputTokens, serviceTier);
  if (rates === null) return null;
  if (rates.input === undefined && inputTokens > 0) return null;
  if (rates.output === undefined && outputTokens > 0) return null;

  const audioIn = usage.audioInputTokens ?? 0;
  const imageIn = usage.imageInputTokens ?? 0;
  const cached = usage.cachedTokens ?? 0;
  const cachedAudio = usage.cachedAudioTokens ?? 0;
  const cachedImage = usage.cachedImageTokens ?? 0;
  const textIn = positive(inputTokens - audioIn - imageIn);
  const cachedText = Math.min(textIn, positive(cached - cachedAudio - cachedImage));
  const input = rates.input ?? 0;
  const audioRate = rates.audioInput ?? input;
  const imageRate = rates.imageInput ?? input;

  let perMillion = (textIn - cachedText) * input + cachedText * (rates.cachedInput ?? input);
  perMillion += positive(audioIn - cachedAudio) * audioRate + Math.min(cachedAudio, audioIn) * (rates.cachedAudioInput ?? audioRate);
  perMillion += positive(imageIn - cachedImage) * imageRate + Math.min(cachedImage, imageIn) * (rates.cachedImageInput ?? imageRate);

  const audioOut = Math.min(usage.audioOutputTokens ?? 0, outputTokens);
  const output = rates.output ?? 0;
  perMillion += (outputTokens - audioOut) * output + audioOut * (rates.audioOutput ?? output);
  return perMillion / 1_000_000;
}

// Long-context rates apply to every token of a request whose input is over the threshold;
// a kind the long-context entry leaves out keeps its ordinary rate. Priority and flex rates
// replace the standard ones; OpenAI publishes them without long context, so a long request
// served in those tiers, or a tier the table has no rates for, is unknown (null).
function ratesFor(price: ModelPrice, inputTokens: number, serviceTier: string | null): TokenPrices | null {
  const long = price.longContext;
  const isLong = long !== undefined && inputTokens > long.aboveInputTokens;
  const tier = serviceTier === 'fast' ? 'priority' : serviceTier;
  if (tier === 'priority' || tier === 'flex') {
    const rates = price[tier];
    return rates === undefined || isLong ? null : rates;
  }
  return isLong ? { ...price, ...long } : price;
}

/**
 * Transcriptions and translations: by duration (whisper-1: `usage.seconds`, rounded to the
 * nearest second, times the per-minute rate), or by tokens (gpt-4o-transcribe reports
 * `input_token_details.audio_tokens`).
 */
function audioInCost(price: ModelPrice, usage: CostUsage | null, facts: CostFacts): number | null {
  if (price.perMinute !== undefined) {
    const seconds = usage?.seconds ?? facts.audioSeconds ?? null;
    if (seconds === null) return null;
    return (Math.round(seconds) * price.perMinute) / 60;
  }
  return tokenCost(price, usage);
}

/** Speech: tts-1 by characters of the request's `input`; gpt-4o-mini-tts by tokens when reported. */
function speechCost(price: ModelPrice, usage: CostUsage | null, facts: CostFacts): number | null {
  if (price.perMillionCharacters !== undefined) {
    const characters = facts.inputCharacters ?? null;
    return characters === null ? null : (characters * price.perMillionCharacters) / 1_000_000;
  }
  return tokenCost(price, usage);
}

/** Images: dall-e per image of the size and quality asked; gpt-image-1 by its reported tokens. */
function imageCost(price: ModelPrice, usage: CostUsage | null, facts: CostFacts): number | null {
  if (price.images === undefined) return tokenCost(price, usage);
  const qualities = Object.keys(price.images);
  // A model priced in one quality only (dall-e-2) ignores the `quality` it is sent.
  const quality = qualities.length === 1 ? qualities[0] : (facts.quality ?? 'standard').toLowerCase();
  const bySize = quality === undefined ? undefined : price.images[quality];
  const each = bySize?.[(facts.size ?? '1024x1024').toLowerCase()];
  if (each === undefined) return null;
  const count = facts.imageCount ?? facts.n ?? 1;
  return count * each;
}

function positive(n: number): number {
  return n > 0 ? n : 0;
}

// Float sums of cents (0.1 + 0.2) would otherwise land in records as 0.30000000000000004.
function rounded(usd: number | null): number | null {
  return usd === null ? null : Math.round(usd * 1e10) / 1e10;
}
