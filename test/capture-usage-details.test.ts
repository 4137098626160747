// Tests for the audio, image and duration parts of OpenAI usage objects, and their sums.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addUsageDetails, normalizeUsageDetails } from '../src/capture/usage-details.ts';

const NONE = { audioInputTokens: null, audioOutputTokens: null, cachedAudioTokens: null, imageInputTokens: null, cachedImageTokens: null, seconds: null };

test('chat completions: audio tokens in prompt and completion details', () => {
  assert.deepEqual(
    normalizeUsageDetails({
      prompt_tokens: 1200,
      completion_tokens: 800,
      prompt_tokens_details: { audio_tokens: 1000, cached_tokens: 0 },
      completion_tokens_details: { audio_tokens: 600, reasoning_tokens: 0 },
    }),
    { ...NONE, audioInputTokens: 1000, audioOutputTokens: 600 },
  );
});

test('Realtime response.done: audio, image and cached audio', () => {
  assert.deepEqual(
    normalizeUsageDetails({
      total_tokens: 253,
      input_tokens: 132,
      output_tokens: 121,
      input_token_details: { text_tokens: 119, audio_tokens: 13, image_tokens: 0, cached_tokens: 64, cached_tokens_details: { text_tokens: 64, audio_tokens: 0, image_tokens: 0 } },
      output_token_details: { text_tokens: 30, audio_tokens: 91 },
    }),
    { audioInputTokens: 13, audioOutputTokens: 91, cachedAudioTokens: 0, imageInputTokens: 0, cachedImageTokens: 0, seconds: null },
  );
});

test('transcriptions: duration or tokens', () => {
  assert.deepEqual(normalizeUsageDetails({ type: 'duration', seconds: 7 }), { ...NONE, seconds: 7 });
  assert.deepEqual(
    normalizeUsageDetails({ type: 'tokens', input_tokens: 14, input_token_details: { text_tokens: 10, audio_tokens: 4 }, output_tokens: 101, total_tokens: 115 }),
    { ...NONE, audioInputTokens: 4 },
  );
});

test('gpt-image-1: image input tokens', () => {
  assert.deepEqual(
    normalizeUsageDetails({ input_tokens: 50, input_tokens_details: { text_tokens: 10, image_tokens: 40 }, output_tokens: 50, total_tokens: 100 }),
    { ...NONE, imageInputTokens: 40 },
  );
});

test('nothing billed apart: null; bad counts are unknown', () => {
  assert.equal(normalizeUsageDetails({ prompt_tokens: 5, completion_tokens: 3 }), null);
  assert.equal(normalizeUsageDetails(null), null);
  assert.equal(normalizeUsageDetails({ type: 'tokens', seconds: 5 }), null);
  assert.equal(normalizeUsageDetails({ type: 'duration', seconds: -1 }), null);
});

test('sums field by field; unknown takes the other side', () => {
  const a = { ...NONE, audioInputTokens: 10, cachedAudioTokens: 2 };
  const b = { ...NONE, audioInputTokens: 5, audioOutputTokens: 7 };
  assert.deepEqual(addUsageDetails(a, b), { ...NONE, audioInputTokens: 15, audioOutputTokens: 7, cachedAudioTokens: 2 });
  assert.equal(addUsageDetails(null, b), b);
  assert.equal(addUsageDetails(a, null), a);
});
