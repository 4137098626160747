// Tests for estimating usage upstream did not report: encodings by model family, and counts
// against the prompt_tokens the OpenAI API itself reported for the same requests.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { encodingForModel, estimateUsage, loadEncoder, preloadTokenizer } from '../src/capture/token-estimate.ts';
import { costUsd } from '../src/policy/cost.ts';

// The OpenAI cookbook, "How to count tokens with tiktoken" (section 6 and 7), sent these to the
// API, which counted 129 prompt tokens for gpt-3.5-turbo and gpt-4 and 124 for gpt-4o and
// gpt-4o-mini; with the weather tool below, 105 and 101.
// https://cookbook.openai.com/examples/how_to_count_tokens_with_tiktoken
const COOKBOOK_MESSAGES = [
  { role: 'system', content: 'You are a helpful, pattern-following assistant that translates corporate jargon into plain English.' },
  { role: 'system', name: 'example_user', content: 'New synergies will help drive top-line growth.' },
  { role: 'system', name: 'example_assistant', content: 'Things working well together will increase revenue.' },
  { role: 'system', name: 'example_user', content: "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage." },
  { role: 'system', name: 'example_assistant', content: "Let's talk later when we're less busy about how to do better." },
  { role: 'user', content: "This late pivot means we don't have time to boil the ocean for the client deliverable." },
];
const WEATHER_TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_current_weather',
      description: 'Get the current weather in a given location',
      parameters: {
        type: 'object',
        properties: {
          location: { type: 'string', description: 'The city and state, e.g. San Francisco, CA' },
          unit: { type: 'string', description: 'The unit of temperature to return', enum: ['celsius', 'fahrenheit'] },
        },
        required: ['location'],
      },
    },
  },
];
const WEATHER_MESSAGES = [
  { role: 'system', content: 'You are a helpful assistant that can answer to questions about the weather.' },
  { role: 'user', content: "What's the weather like in San Francisco?" },
];

test('model families map to their encodings', () => {
  for (const model of ['gpt-4o', 'gpt-4o-mini-2024-07-18', 'gpt-4.1-nano', 'gpt-4.5-preview', 'gpt-5', 'o1', 'o3-mini', 'o4-mini', 'gpt-realtime', 'ft:gpt-4o-mini-2024-07-18:acme::x', 'some-new-model', null]) {
    assert.equal(encodingForModel(model), 'o200k_base', String(model));
  }
  for (const model of ['gpt-4', 'gpt-4-0613', 'gpt-4-turbo', 'gpt-4-32k', 'gpt-3.5-turbo', 'gpt-3.5-turbo-instruct', 'text-embedding-3-small', 'text-embedding-ada-002', 'ft:gpt-3.5-turbo-0125:acme::y']) {
    assert.equal(encodingForModel(model), 'cl100k_base', model);
  }
});

test('the encodings count as tiktoken does', async () => {
  // o200k_base encodes "Hello, world!" as [13225, 11, 2375, 0]; cl100k_base as [9906, 11, 1917, 0].
  assert.equal((await loadEncoder('o200k_base')).countTokens('Hello, world!'), 4);
  assert.equal((await loadEncoder('cl100k_base')).countTokens('Hello, world!'), 4);
  // Special-token text in user content is counted as text, not refused.
  assert.ok((await loadEncoder('o200k_base')).countTokens('<|endoftext|>') > 1);
});

test('chat input: the counts the OpenAI API reported for the cookbook messages', async () => {
  for (const [model, expected] of [['gpt-4o', 124], ['gpt-4o-mini', 124], ['gpt-3.5-turbo', 129], ['gpt-4-0613', 129]] as const) {
    const usage = await estimateUsage('chat.completions', model, { model, messages: COOKBOOK_MESSAGES }, null);
    assert.equal(usage?.inputTokens, expected, model);
  }
});

test('chat input with function tools: the counts the OpenAI API reported', async () => {
  for (const [model, expected] of [['gpt-4o', 101], ['gpt-4o-mini', 101], ['gpt-3.5-turbo', 105], ['gpt-4', 105]] as const) {
    const usage = await estimateUsage('chat.completions', model, { model, messages: WEATHER_MESSAGES, tools: WEATHER_TOOLS }, null);
    assert.equal(usage?.inputTokens, expected, model);
  }
});

test('an aborted stream: input from the request, output from the text received, then priced', async () => {
  // "Hello! How can I assist you today?" is 9 o200k tokens: Hello ! How can I assist you today ?
  const usage = await estimateUsage('chat.completions', 'gpt-4o-2024-08-06', { messages: COOKBOOK_MESSAGES, stream: true }, 'Hello! How can I assist you today?');
  assert.deepEqual(usage, { inputTokens: 124, outputTokens: 9, totalTokens: 133, cachedTokens: null, reasoningTokens: null });
  // 124 × 2.5 + 9 × 10 = 310 + 90 = 400 → $0.0004
  assert.equal(costUsd('chat.completions', 'gpt-4o-2024-08-06', usage), 0.0004);
});

test('the same tool counts the same in Responses (flat tools) and legacy `functions`', async () => {
  const flat = [{ type: 'function', ...WEATHER_TOOLS[0]?.function }];
  const [system, user] = WEATHER_MESSAGES;
  const responses = await estimateUsage('responses', 'gpt-4o', { instructions: system?.content, input: user?.content, tools: flat }, null);
  assert.equal(responses?.inputTokens, 101);
  const legacy = await estimateUsage('chat.completions', 'gpt-4o', { messages: WEATHER_MESSAGES, functions: [WEATHER_TOOLS[0]?.function] }, null);
  assert.equal(legacy?.inputTokens, 101);
});

test('tool calls and tool results are counted by their text', async () => {
  const encoder = await loadEncoder('o200k_base');
  const args = '{"location":"Paris, France"}';
  const usage = await estimateUsage('chat.completions', 'gpt-4.1', {
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_current_weather', arguments: args } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '22C and sunny' },
    ],
  }, null);
  const t = (text: string) => encoder.countTokens(text);
  // priming 3; user: 3 + role + content; assistant: 3 + role + function name + arguments;
  // tool: 3 + role + tool_call_id + content
  const byHand = 3 + (3 + t('user') + t('Weather in Paris?')) + (3 + t('assistant') + t('get_current_weather') + t(args)) + (3 + t('tool') + t('call_1') + t('22C and sunny'));
  assert.equal(usage?.inputTokens, byHand);
  const responses = await estimateUsage('responses', 'gpt-4.1', {
    input: [
      { type: 'message', role: 'user', content: 'Weather in Paris?' },
      { type: 'function_call', call_id: 'call_1', name: 'get_current_weather', arguments: args },
      { type: 'function_call_output', call_id: 'call_1', output: '22C and sunny' },
    ],
  }, null);
  // Items: 3 each, plus their text fields (type, id and status are not text the model reads).
  assert.equal(responses?.inputTokens, 3 + (3 + t('user') + t('Weather in Paris?')) + (3 + t('call_1') + t('get_current_weather') + t(args)) + (3 + t('call_1') + t('22C and sunny')));
});

test('images in the input are not counted (the estimate runs low)', async () => {
  const withImage = await estimateUsage('chat.completions', 'gpt-4o', {
    messages: [{ role: 'user', content: [{ type: 'text', text: 'What is in this picture?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }],
  }, null);
  const textOnly = await estimateUsage('chat.completions', 'gpt-4o', { messages: [{ role: 'user', content: 'What is in this picture?' }] }, null);
  assert.equal(withImage?.inputTokens, textOnly?.inputTokens);
});

test('Responses input is counted like the same chat messages', async () => {
  const encoder = await loadEncoder('o200k_base');
  const asChat = await estimateUsage('chat.completions', 'gpt-5', { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Tell me a joke.' }] }, null);
  const asString = await estimateUsage('responses', 'gpt-5', { instructions: 'Be brief.', input: 'Tell me a joke.' }, null);
  const asItems = await estimateUsage('responses', 'gpt-5', {
    input: [
      { type: 'message', role: 'system', content: 'Be brief.' },
      { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Tell me a joke.' }] },
    ],
  }, null);
  // 3 (priming) + 3 + "system" + "Be brief." + 3 + "user" + "Tell me a joke."
  const byHand = 3 + 3 + encoder.countTokens('system') + encoder.countTokens('Be brief.') + 3 + encoder.countTokens('user') + encoder.countTokens('Tell me a joke.');
  assert.equal(asChat?.inputTokens, byHand);
  assert.equal(asString?.inputTokens, byHand);
  assert.equal(asItems?.inputTokens, byHand);
});

test('embeddings and completions: strings, lists and pre-tokenized input', async () => {
  const encoder = await loadEncoder('cl100k_base');
  const usage = await estimateUsage('embeddings', 'text-embedding-3-small', { input: ['hello world', 'the quick brown fox', [1, 2, 3]] }, null);
  assert.equal(usage?.inputTokens, encoder.countTokens('hello world') + encoder.countTokens('the quick brown fox') + 3);
  assert.equal(usage?.outputTokens, 0);
  const completion = await estimateUsage('completions', 'gpt-3.5-turbo-instruct', { prompt: 'Say this is a test' }, 'This is a test.');
  assert.equal(completion?.inputTokens, encoder.countTokens('Say this is a test'));
  assert.equal(completion?.outputTokens, encoder.countTokens('This is a test.'));
});

test('what cannot be estimated is null', async () => {
  assert.equal(await estimateUsage('realtime', 'gpt-realtime', {}, 'hi'), null);
  assert.equal(await estimateUsage('audio.speech', 'tts-1', { input: 'hi' }, null), null);
  assert.equal(await estimateUsage('chat.completions', 'gpt-4o', 'not json', null), null);
  assert.equal(await estimateUsage('chat.completions', 'gpt-4o', { messages: 'hi' }, null), null);
  assert.equal(await estimateUsage('responses', 'gpt-4o', { previous_response_id: 'resp_1' }, null), null);
  assert.equal(await estimateUsage('embeddings', 'text-embedding-3-small', { input: 42 }, null), null);
  // Output alone, when the request body was not captured.
  assert.deepEqual(await estimateUsage('chat.completions', 'gpt-4o', null, 'Hello, world!'), {
    inputTokens: null,
    outputTokens: 4,
    totalTokens: null,
    cachedTokens: null,
    reasoningTokens: null,
  });
});

test('preloading loads the encoding the model needs, once', async () => {
  await preloadTokenizer('gpt-3.5-turbo');
  await preloadTokenizer();
  assert.equal(loadEncoder('cl100k_base'), loadEncoder('cl100k_base'));
});

test('importing the estimator does not load a tokenizer', () => {
  // The hot path imports this module; the encodings (megabytes) must only load on first use.
  const source = readFileSync(new URL('../src/capture/token-estimate.ts', import.meta.url), 'utf8');
  assert.doesNotMatch(source, /^import[^;]*gpt-tokenizer/m);
  assert.match(source, /import\('gpt-tokenizer\/encoding\/o200k_base'\)/);
});
