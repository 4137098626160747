/**
 * Reads the facts that price an exchange when usage does not: the characters of a speech
 * request's `input`, the number, size and quality of images, a transcription's duration.
 * Request fields per the OpenAI API reference (audio/createSpeech, images/create).
 */
import { isObject } from '../capture/guards.ts';
import type { CostFacts } from './cost.ts';

/**
 * Facts from the request: a parsed JSON body, or the fields of a multipart form (images.edits,
 * images.variations) as a plain object of strings.
 */
export function costFactsFromRequest(operation: string | null, body: unknown): CostFacts {
  if (!isObject(body)) return {};
  if (operation === 'audio.speech') {
    return typeof body.input === 'string' ? { inputCharacters: characters(body.input) } : {};
  }
  if (operation !== null && operation.startsWith('images.')) {
    const n = typeof body.n === 'string' ? Number(body.n) : body.n;
    return {
      n: typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : null,
      size: typeof body.size === 'string' ? body.size : null,
      quality: typeof body.quality === 'string' ? body.quality : null,
    };
  }
  return {};
}

/**
 * Facts from the response: images returned, seconds of audio transcribed (verbose_json), the
 * service tier that served it (chat and Responses say `service_tier`; in a stream, every
 * chunk or the `response.completed` event's `response` carries it: pass that object).
 */
export function costFactsFromResponse(operation: string | null, body: unknown): CostFacts {
  if (!isObject(body)) return {};
  const facts: CostFacts = {};
  if (typeof body.service_tier === 'string') facts.serviceTier = body.service_tier;
  if (operation !== null && operation.startsWith('images.') && Array.isArray(body.data)) {
    facts.imageCount = body.data.length;
  }
  const audio = operation === 'audio.transcriptions' || operation === 'audio.translations';
  if (audio && typeof body.duration === 'number' && Number.isFinite(body.duration) && body.duration >= 0) {
    facts.audioSeconds = body.duration;
  }
  return facts;
}

/**
 * Characters of a speech input, counted as Unicode code points: an emoji counts once, not as
 * its two UTF-16 halves. OpenAI prices "per 1M characters" without saying how it counts them.
 */
export function characters(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}
