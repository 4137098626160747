// Tests for usage normalisation across OpenAI usage shapes, and usage sums.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addUsage, normalizeUsage } from '../src/capture/usage.ts';

test('chat/completions usage with details', () => {
  const usage = normalizeUsage({
    prompt_tokens: 19,
    completion_tokens: 10,
    total_tokens: 29,
    prompt_tokens_details: { cached_tokens: 4, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 6, audio_tokens: 0 },
  });
  assert.deepEqual(usage, { inputTokens: 19, outputTokens: 10, totalTokens: 29, cachedTokens: 4, reasoningTokens: 6, audioInputTokens: 0, audioOutputTokens: 0 });
});

test('embeddings usage has no output tokens', () => {
  assert.deepEqual(normalizeUsage({ prompt_tokens: 8, total_tokens: 8 }), {
    inputTokens: 8,
    outputTokens: null,
    totalTokens: 8,
    cachedTokens: null,
    reasoningTokens: null,
  });
});

test('Responses usage', () => {
  const usage = normalizeUsage({
    input_tokens: 36,
    input_tokens_details: { cached_tokens: 12 },
    output_tokens: 87,
    output_tokens_details: { reasoning_tokens: 64 },
    total_tokens: 123,
  });
  assert.deepEqual(usage, { inputTokens: 36, outputTokens: 87, totalTokens: 123, cachedTokens: 12, reasoningTokens: 64 });
});

test('Realtime usage (singular `input_token_details`)', () => {
  const usage = normalizeUsage({
    total_tokens: 253,
    input_tokens: 132,
    output_tokens: 121,
    input_token_details: { text_tokens: 119, audio_tokens: 13, cached_tokens: 64 },
    output_token_details: { text_tokens: 30, audio_tokens: 91 },
  });
  assert.deepEqual(usage, { inputTokens: 132, outputTokens: 121, totalTokens: 253, cachedTokens: 64, reasoningTokens: null, audioInputTokens: 13, audioOutputTokens: 91 });
});

test('audio transcription token usage; duration usage has seconds and no tokens', () => {
  assert.deepEqual(
    normalizeUsage({ type: 'tokens', input_tokens: 14, input_token_details: { audio_tokens: 14 }, output_tokens: 45, total_tokens: 59 }),
    { inputTokens: 14, outputTokens: 45, totalTokens: 59, cachedTokens: null, reasoningTokens: null, audioInputTokens: 14 },
  );
  assert.deepEqual(normalizeUsage({ type: 'duration', seconds: 9 }), {
    inputTokens: null,
    outputTokens: null,
    totalTokens: null,
    cachedTokens: null,
    reasoningTokens: null,
    seconds: 9,
  });
});

test('Realtime usage sums its audio parts, present only where reported', () => {
  const first = normalizeUsage({ input_tokens: 100, output_tokens: 50, total_tokens: 150, input_token_details: { audio_tokens: 60 }, output_token_details: { audio_tokens: 40 } });
  const second = normalizeUsage({ input_tokens: 10, output_tokens: 5, total_tokens: 15, input_token_details: { audio_tokens: 4, cached_tokens: 0 } });
  assert.deepEqual(addUsage(first, second), {
    inputTokens: 110,
    outputTokens: 55,
    totalTokens: 165,
    cachedTokens: 0,
    reasoningTokens: null,
    audioInputTokens: 64,
    audioOutputTokens: 40,
  });
});

test('anything else is null, and bad counts are ignored', () => {
  for (const raw of [null, undefined, 3, 'usage', [], {}]) assert.equal(normalizeUsage(raw), null);
  assert.deepEqual(normalizeUsage({ prompt_tokens: -1, completion_tokens: '5', total_tokens: 7 }), {
    inputTokens: null,
    outputTokens: null,
    totalTokens: 7,
    cachedTokens: null,
    reasoningTokens: null,
  });
});

test('addUsage sums field by field, a null side taking the other value', () => {
  const a = { inputTokens: 1, outputTokens: 2, totalTokens: 3, cachedTokens: null, reasoningTokens: 1 };
  const b = { inputTokens: 10, outputTokens: null, totalTokens: 30, cachedTokens: 5, reasoningTokens: 2 };
  assert.deepEqual(addUsage(a, b), { inputTokens: 11, outputTokens: 2, totalTokens: 33, cachedTokens: 5, reasoningTokens: 3 });
  assert.equal(addUsage(null, b), b);
  assert.equal(addUsage(a, null), a);
  assert.equal(addUsage(null, null), null);
});
