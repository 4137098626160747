// Price arithmetic for each priced operation, against figures worked by hand (each case's
// comment shows the sum, in USD per 1M tokens × tokens / 1M unless said otherwise).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addUsage, normalizeUsage } from '../src/capture/usage.ts';
import { addUsageDetails, normalizeUsageDetails } from '../src/capture/usage-details.ts';
import { costUsd, isPricedOperation, type CostUsage } from '../src/policy/cost.ts';
import { characters, costFactsFromRequest, costFactsFromResponse } from '../src/policy/cost-facts.ts';
import { mergePrices, parsePriceOverrides, shippedPrices } from '../src/policy/prices.ts';

/** The record's usage as the lead will merge it: usage.ts and usage-details.ts of one raw object. */
function usageOf(raw: unknown): CostUsage | null {
  const base = normalizeUsage(raw);
  const details = normalizeUsageDetails(raw);
  if (base === null && details === null) return null;
  return { inputTokens: null, outputTokens: null, ...base, ...details };
}

function near(actual: number | null, expected: number): void {
  assert.notEqual(actual, null);
  assert.ok(Math.abs((actual ?? NaN) - expected) < 1e-12, `${actual} ≠ ${expected}`);
}

test('chat: uncached input, cached input and output at their own rates', () => {
  // gpt-4o: 600 × 2.50 + 400 × 1.25 + 500 × 10 = 1500 + 500 + 5000 = 7000 → $0.007
  const usage = usageOf({ prompt_tokens: 1000, completion_tokens: 500, prompt_tokens_details: { cached_tokens: 400 } });
  near(costUsd('chat.completions', 'gpt-4o', usage), 0.007);
  // The same through a dated snapshot, which falls back to gpt-4o.
  near(costUsd('chat.completions', 'gpt-4o-2024-08-06', usage), 0.007);
  // Responses API shape, same numbers.
  const responses = usageOf({ input_tokens: 1000, output_tokens: 500, input_tokens_details: { cached_tokens: 400 } });
  near(costUsd('responses', 'gpt-4o', responses), 0.007);
});

test('a model without a cached price bills cached tokens as input', () => {
  // gpt-4-turbo: 1000 × 10 + 100 × 30 = 10000 + 3000 = 13000 → $0.013 (200 cached at the input rate)
  const usage = usageOf({ prompt_tokens: 1000, completion_tokens: 100, prompt_tokens_details: { cached_tokens: 200 } });
  near(costUsd('chat.completions', 'gpt-4-turbo', usage), 0.013);
});

test('reasoning tokens are output tokens', () => {
  // gpt-5: 2000 × 1.25 + 3000 × 10 = 2500 + 30000 = 32500 → $0.0325 (2500 of the 3000 are reasoning)
  const usage = usageOf({ prompt_tokens: 2000, completion_tokens: 3000, completion_tokens_details: { reasoning_tokens: 2500 } });
  near(costUsd('chat.completions', 'gpt-5', usage), 0.0325);
});

test('embeddings: input tokens only', () => {
  // text-embedding-3-small: 12345 × 0.02 = 246.9 → $0.0002469
  near(costUsd('embeddings', 'text-embedding-3-small', usageOf({ prompt_tokens: 12345, total_tokens: 12345 })), 0.0002469);
});

test('chat with audio: audio tokens at the audio rates', () => {
  // gpt-4o-audio-preview, 1200 in (1000 audio), 800 out (600 audio):
  // text in 200 × 2.5 = 500; audio in 1000 × 40 = 40000; text out 200 × 10 = 2000; audio out 600 × 80 = 48000
  // 500 + 40000 + 2000 + 48000 = 90500 → $0.0905
  const usage = usageOf({
    prompt_tokens: 1200,
    completion_tokens: 800,
    prompt_tokens_details: { audio_tokens: 1000, cached_tokens: 0 },
    completion_tokens_details: { audio_tokens: 600 },
  });
  near(costUsd('chat.completions', 'gpt-4o-audio-preview-2024-12-17', usage), 0.0905);
});

test('Realtime: a session priced from its summed usage, cached audio apart from cached text', () => {
  // Two response.done usages (OpenAI Realtime reference shape), summed as the session is.
  const first = {
    total_tokens: 4000,
    input_tokens: 3000,
    output_tokens: 1000,
    input_token_details: { text_tokens: 600, audio_tokens: 2400, cached_tokens: 1000, cached_tokens_details: { text_tokens: 200, audio_tokens: 800 } },
    output_token_details: { text_tokens: 200, audio_tokens: 800 },
  };
  const second = {
    total_tokens: 4000,
    input_tokens: 2000,
    output_tokens: 2000,
    input_token_details: { text_tokens: 400, audio_tokens: 1600, cached_tokens: 1000, cached_tokens_details: { text_tokens: 300, audio_tokens: 700 } },
    output_token_details: { text_tokens: 300, audio_tokens: 1700 },
  };
  const usage: CostUsage = {
    inputTokens: null,
    outputTokens: null,
    ...addUsage(normalizeUsage(first), normalizeUsage(second)),
    ...addUsageDetails(normalizeUsageDetails(first), normalizeUsageDetails(second)),
  };
  // Sum: input 5000 (audio 4000, text 1000), cached 2000 (audio 1500, text 500), output 3000 (audio 2500, text 500).
  assert.equal(usage.inputTokens, 5000);
  assert.equal(usage.cachedTokens, 2000);
  assert.equal(usage.cachedAudioTokens, 1500);
  assert.equal(usage.audioOutputTokens, 2500);
  // gpt-realtime: text 500 × 4 = 2000; cached text 500 × 0.4 = 200; audio 2500 × 32 = 80000;
  // cached audio 1500 × 0.4 = 600; text out 500 × 16 = 8000; audio out 2500 × 64 = 160000
  // = 250800 → $0.2508
  near(costUsd('realtime', 'gpt-realtime', usage), 0.2508);
  // gpt-realtime-mini, whose cached audio (0.30) and cached text (0.06) differ:
  // 500 × 0.6 = 300; 500 × 0.06 = 30; 2500 × 10 = 25000; 1500 × 0.3 = 450; 500 × 2.4 = 1200; 2500 × 20 = 50000
  // = 76980 → $0.07698
  near(costUsd('realtime', 'gpt-realtime-mini-2025-12-15', usage), 0.07698);
});

test('transcription by duration: whisper-1 per minute, rounded to the nearest second', () => {
  // 61.4 s → 61 s; 61 × 0.006 / 60 = $0.0061
  near(costUsd('audio.transcriptions', 'whisper-1', usageOf({ type: 'duration', seconds: 61.4 })), 0.0061);
  // 3 s → 3 × 0.006 / 60 = $0.0003
  near(costUsd('audio.transcriptions', 'whisper-1', usageOf({ type: 'duration', seconds: 3 })), 0.0003);
  // Translations report no usage; a verbose_json duration of 90.6 s → 91 × 0.0001 = $0.0091
  const facts = costFactsFromResponse('audio.translations', { task: 'translate', duration: 90.6, text: 'hi' });
  near(costUsd('audio.translations', 'whisper-1', null, facts), 0.0091);
  // Neither usage nor duration (response_format=text): unknown.
  assert.equal(costUsd('audio.transcriptions', 'whisper-1', null), null);
});

test('transcription by tokens: gpt-4o-transcribe audio input apart from its text prompt', () => {
  // 200 text × 2.5 = 500; 1000 audio × 6 = 6000; 300 out × 10 = 3000 → 9500 → $0.0095
  const usage = usageOf({
    type: 'tokens',
    input_tokens: 1200,
    input_token_details: { text_tokens: 200, audio_tokens: 1000 },
    output_tokens: 300,
    total_tokens: 1500,
  });
  near(costUsd('audio.transcriptions', 'gpt-4o-transcribe', usage), 0.0095);
  // gpt-4o-mini-transcribe: 200 × 1.25 + 1000 × 3 + 300 × 5 = 250 + 3000 + 1500 = 4750 → $0.00475
  near(costUsd('audio.transcriptions', 'gpt-4o-mini-transcribe', usage), 0.00475);
});

test('speech: tts-1 by characters of the request input', () => {
  // 2000 characters × 15 / 1M = $0.03; tts-1-hd × 30 = $0.06
  const facts = costFactsFromRequest('audio.speech', { model: 'tts-1', voice: 'alloy', input: 'x'.repeat(2000) });
  assert.equal(facts.inputCharacters, 2000);
  near(costUsd('audio.speech', 'tts-1', null, facts), 0.03);
  near(costUsd('audio.speech', 'tts-1-hd', null, facts), 0.06);
  // "Hi 👋" is 4 characters (the emoji once, not its two UTF-16 halves): 4 × 15 / 1M = $0.00006
  assert.equal(characters('Hi 👋'), 4);
  near(costUsd('audio.speech', 'tts-1', null, costFactsFromRequest('audio.speech', { input: 'Hi 👋' })), 0.00006);
  assert.equal(costUsd('audio.speech', 'tts-1', null, {}), null);
});

test('speech: gpt-4o-mini-tts by tokens when reported, else unknown', () => {
  // 50 text in × 0.6 = 30; 1000 audio out × 12 = 12000 → 12030 → $0.01203
  near(costUsd('audio.speech', 'gpt-4o-mini-tts', usageOf({ input_tokens: 50, output_tokens: 1000, total_tokens: 1050 })), 0.01203);
  assert.equal(costUsd('audio.speech', 'gpt-4o-mini-tts', null, { inputCharacters: 100 }), null);
});

test('images: dall-e per image of the size and quality asked', () => {
  // dall-e-3 hd 1792x1024, n=2: 2 × 0.12 = $0.24
  const hd = costFactsFromRequest('images.generations', { model: 'dall-e-3', prompt: 'a cat', n: 2, size: '1792x1024', quality: 'hd' });
  near(costUsd('images.generations', 'dall-e-3', null, hd), 0.24);
  // Defaults: standard 1024x1024, one image: $0.04
  near(costUsd('images.generations', 'dall-e-3', null, costFactsFromRequest('images.generations', { prompt: 'a cat' })), 0.04);
  // The images returned count over the n asked: 3 × 0.04 = $0.12
  const returned = { ...costFactsFromRequest('images.generations', { n: 2 }), ...costFactsFromResponse('images.generations', { data: [{}, {}, {}] }) };
  near(costUsd('images.generations', 'dall-e-3', null, returned), 0.12);
  // dall-e-2 (one quality: `quality` ignored), multipart fields as strings, 512x512 × 4 = 4 × 0.018 = $0.072
  const edit = costFactsFromRequest('images.edits', { n: '4', size: '512x512', quality: 'hd' });
  near(costUsd('images.edits', 'dall-e-2', null, edit), 0.072);
  // A size the model has no price for: unknown.
  assert.equal(costUsd('images.generations', 'dall-e-3', null, { size: '512x512' }), null);
});

test('images: gpt-image-1 by its reported tokens', () => {
  // 50 text × 5 = 250; 200 image in × 10 = 2000; 4160 image out × 40 = 166400 → 168650 → $0.16865
  const usage = usageOf({
    input_tokens: 250,
    input_tokens_details: { text_tokens: 50, image_tokens: 200 },
    output_tokens: 4160,
    total_tokens: 4410,
  });
  near(costUsd('images.generations', 'gpt-image-1', usage), 0.16865);
  assert.equal(costUsd('images.generations', 'gpt-image-1', null, { n: 1 }), null);
});

test('long context: the whole request at the long-context rates past the threshold', () => {
  // gpt-5.4, 300000 in (100000 cached), 10000 out, over 272000: 200000 × 5 + 100000 × 0.5 + 10000 × 22.5
  // = 1000000 + 50000 + 225000 = 1275000 → $1.275
  const long = usageOf({ prompt_tokens: 300000, completion_tokens: 10000, prompt_tokens_details: { cached_tokens: 100000 } });
  near(costUsd('chat.completions', 'gpt-5.4', long), 1.275);
  // At the threshold itself, ordinary rates: 272000 × 2.5 + 1000 × 15 = 680000 + 15000 → $0.695
  near(costUsd('chat.completions', 'gpt-5.4', usageOf({ prompt_tokens: 272000, completion_tokens: 1000 })), 0.695);
});

test('service tiers: priority (fast) and flex rates when the response says so', () => {
  const usage = usageOf({ prompt_tokens: 1000, completion_tokens: 500, prompt_tokens_details: { cached_tokens: 400 } });
  const tier = (serviceTier: string) => costFactsFromResponse('chat.completions', { object: 'chat.completion', service_tier: serviceTier });
  // gpt-5 standard ("default"): 600 × 1.25 + 400 × 0.125 + 500 × 10 = 750 + 50 + 5000 = 5800 → $0.0058
  near(costUsd('chat.completions', 'gpt-5', usage, tier('default')), 0.0058);
  // priority: 600 × 2.5 + 400 × 0.25 + 500 × 20 = 1500 + 100 + 10000 = 11600 → $0.0116; "fast" is its new name
  near(costUsd('chat.completions', 'gpt-5', usage, tier('priority')), 0.0116);
  near(costUsd('responses', 'gpt-5-2025-08-07', usage, tier('fast')), 0.0116);
  // An alias carries its entry's tiers: gpt-5-codex is gpt-5.
  near(costUsd('responses', 'gpt-5-codex', usage, tier('priority')), 0.0116);
  // flex: 600 × 0.625 + 400 × 0.0625 + 500 × 5 = 375 + 25 + 2500 = 2900 → $0.0029
  near(costUsd('chat.completions', 'gpt-5', usage, tier('flex')), 0.0029);
  // No published flex rate for gpt-4.1-nano, no priority rate over gpt-5.4's long-context threshold: unknown.
  assert.equal(costUsd('chat.completions', 'gpt-4.1-nano', usage, tier('flex')), null);
  const long = usageOf({ prompt_tokens: 300000, completion_tokens: 10 });
  assert.equal(costUsd('chat.completions', 'gpt-5.4', long, tier('priority')), null);
  // Tiers price tokens only: a speech request stays priced by characters.
  near(costUsd('audio.speech', 'tts-1', null, { inputCharacters: 1000, serviceTier: 'priority' }), 0.015);
});

test('moderation is free, whatever the model', () => {
  assert.equal(costUsd('moderations', 'omni-moderation-latest', usageOf({ prompt_tokens: 10 })), 0);
  assert.equal(costUsd('moderations', null, null), 0);
});

test('policy overrides price what the table does not', () => {
  // ft:gpt-4o-mini:acme:2024 at the policy's prices: 10000 × 0.3 + 2000 × 1.2 = 3000 + 2400 → $0.0054
  const table = mergePrices(shippedPrices(), parsePriceOverrides({ 'ft:gpt-4o-mini:acme:2024': { input: 0.3, cachedInput: 0.15, output: 1.2 } }));
  const usage = usageOf({ prompt_tokens: 10000, completion_tokens: 2000 });
  assert.equal(costUsd('chat.completions', 'ft:gpt-4o-mini:acme:2024', usage), null);
  near(costUsd('chat.completions', 'ft:gpt-4o-mini:acme:2024', usage, {}, table), 0.0054);
  // An override of a shipped model wins: gpt-4o at 2 / 8 → 10000 × 2 + 2000 × 8 = 36000 → $0.036
  const cheaper = mergePrices(shippedPrices(), parsePriceOverrides({ 'gpt-4o': { input: 2, output: 8 } }));
  near(costUsd('chat.completions', 'gpt-4o-2024-08-06', usage, {}, cheaper), 0.036);
});

test('unknown: model, operation, usage, or a rate the model lacks', () => {
  const usage = usageOf({ prompt_tokens: 10, completion_tokens: 10 });
  assert.equal(costUsd('chat.completions', 'my-local-llama', usage), null);
  assert.equal(costUsd('chat.completions', null, usage), null);
  assert.equal(costUsd('files', 'gpt-4o', usage), null);
  assert.equal(costUsd(null, 'gpt-4o', usage), null);
  assert.equal(costUsd('chat.completions', 'gpt-4o', null), null);
  // whisper-1 has only a per-minute rate: chat tokens cannot be priced with it.
  assert.equal(costUsd('chat.completions', 'whisper-1', usage), null);
  // An embeddings model has no output rate.
  assert.equal(costUsd('chat.completions', 'text-embedding-3-small', usage), null);
});

test('sums of small amounts stay exact to the tenth of a nano-dollar', () => {
  // gpt-4o-mini, 1 in + 1 out: 0.15 + 0.6 = 0.75 → $0.00000075 exactly
  assert.equal(costUsd('chat.completions', 'gpt-4o-mini', usageOf({ prompt_tokens: 1, completion_tokens: 1 })), 7.5e-7);
  // gpt-4.1-nano, 3 in: 3 × 0.1 = 0.3 → $0.0000003, where float arithmetic alone gives 3.0000000000000004e-7
  assert.equal(costUsd('chat.completions', 'gpt-4.1-nano', usageOf({ prompt_tokens: 3, completion_tokens: 0 })), 3e-7);
});

test('isPricedOperation tells billed operations from free stored-object calls', () => {
  for (const op of ['chat.completions', 'responses', 'embeddings', 'realtime', 'audio.speech', 'audio.transcriptions', 'images.edits', 'moderations']) {
    assert.equal(isPricedOperation(op), true, op);
  }
  for (const op of ['models', 'files', 'chat.completions.retrieve', 'responses.input_items', null]) {
    assert.equal(isPricedOperation(op), false, String(op));
  }
});

test('facts are read only from what they can be read from', () => {
  assert.deepEqual(costFactsFromRequest('audio.speech', 'not an object'), {});
  assert.deepEqual(costFactsFromRequest('audio.speech', { input: ['not', 'a string'] }), {});
  assert.deepEqual(costFactsFromRequest('chat.completions', { messages: [] }), {});
  assert.deepEqual(costFactsFromRequest('images.generations', { n: 0, size: 1024 }), { n: null, size: null, quality: null });
  assert.deepEqual(costFactsFromRequest('images.edits', { n: 'two' }), { n: null, size: null, quality: null });
  assert.deepEqual(costFactsFromResponse('audio.transcriptions', { duration: -3 }), {});
  assert.deepEqual(costFactsFromResponse('audio.transcriptions', { duration: '12.5' }), {});
  assert.deepEqual(costFactsFromResponse('images.generations', { data: 'none' }), {});
  assert.deepEqual(costFactsFromResponse(null, []), {});
});
