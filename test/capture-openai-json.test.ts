// Tests for reading OpenAI facts from non-streamed JSON requests and responses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requestFactsFromJson, responseFactsFromJson } from '../src/capture/openai-json.ts';

test('request facts: model and stream flag, from JSON or multipart text fields', () => {
  assert.deepEqual(requestFactsFromJson({ model: 'gpt-4o', stream: true, messages: [] }), { requestModel: 'gpt-4o', stream: true });
  assert.deepEqual(requestFactsFromJson({ model: 'text-embedding-3-small', input: 'x' }), {
    requestModel: 'text-embedding-3-small',
    stream: false,
  });
  assert.deepEqual(requestFactsFromJson({ model: 'gpt-4o-transcribe', stream: 'true' }), {
    requestModel: 'gpt-4o-transcribe',
    stream: true,
  });
  for (const body of [null, 'text', [1], { model: 5, stream: 1 }]) {
    assert.deepEqual(requestFactsFromJson(body), { requestModel: null, stream: false });
  }
});

test('chat.completion: choices joined, finish reasons, usage', () => {
  const facts = responseFactsFromJson({
    id: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT',
    object: 'chat.completion',
    created: 1741569952,
    model: 'gpt-4.1-2025-04-14',
    choices: [
      { index: 0, message: { role: 'assistant', content: 'Hello!', refusal: null }, logprobs: null, finish_reason: 'stop' },
      { index: 1, message: { role: 'assistant', content: null, tool_calls: [] }, logprobs: null, finish_reason: 'tool_calls' },
      { index: 2, message: { role: 'assistant', content: 'Hi.' }, logprobs: null, finish_reason: 'length' },
    ],
    usage: { prompt_tokens: 19, completion_tokens: 10, total_tokens: 29, prompt_tokens_details: { cached_tokens: 0 } },
  });
  assert.deepEqual(facts, {
    responseModel: 'gpt-4.1-2025-04-14',
    responseId: 'chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT',
    finishReasons: ['stop', 'tool_calls', 'length'],
    usage: { inputTokens: 19, outputTokens: 10, totalTokens: 29, cachedTokens: 0, reasoningTokens: null },
    outputText: 'Hello!\nHi.',
  });
});

test('text_completion', () => {
  const facts = responseFactsFromJson({
    id: 'cmpl-1',
    object: 'text_completion',
    model: 'gpt-3.5-turbo-instruct',
    choices: [{ text: 'This is a test.', index: 0, logprobs: null, finish_reason: 'length' }],
    usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
  });
  assert.equal(facts.outputText, 'This is a test.');
  assert.deepEqual(facts.finishReasons, ['length']);
  assert.equal(facts.usage?.totalTokens, 12);
});

test('Responses object: output_text parts of message items, status as finish reason', () => {
  const facts = responseFactsFromJson({
    id: 'resp_67ccd2bed1ec8190b14f964abc054267',
    object: 'response',
    status: 'completed',
    model: 'gpt-4.1-2025-04-14',
    output: [
      { type: 'reasoning', id: 'rs_1', summary: [] },
      {
        type: 'message',
        id: 'msg_1',
        role: 'assistant',
        content: [
          { type: 'output_text', text: 'In a peaceful grove', annotations: [] },
          { type: 'refusal', refusal: 'no' },
          { type: 'output_text', text: ', a unicorn slept.', annotations: [] },
        ],
      },
    ],
    usage: {
      input_tokens: 36,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 87,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 123,
    },
  });
  assert.deepEqual(facts, {
    responseModel: 'gpt-4.1-2025-04-14',
    responseId: 'resp_67ccd2bed1ec8190b14f964abc054267',
    finishReasons: ['completed'],
    usage: { inputTokens: 36, outputTokens: 87, totalTokens: 123, cachedTokens: 0, reasoningTokens: 0 },
    outputText: 'In a peaceful grove, a unicorn slept.',
  });
});

test('embeddings list: model and usage only', () => {
  const facts = responseFactsFromJson({
    object: 'list',
    data: [{ object: 'embedding', index: 0, embedding: [0.1, 0.2] }],
    model: 'text-embedding-3-small',
    usage: { prompt_tokens: 8, total_tokens: 8 },
  });
  assert.deepEqual(facts, {
    responseModel: 'text-embedding-3-small',
    responseId: null,
    finishReasons: [],
    usage: { inputTokens: 8, outputTokens: null, totalTokens: 8, cachedTokens: null, reasoningTokens: null },
    outputText: null,
  });
});

test('transcription: text and token usage', () => {
  const facts = responseFactsFromJson({
    text: 'Imagine the wildest idea.',
    usage: { type: 'tokens', input_tokens: 14, output_tokens: 45, total_tokens: 59 },
  });
  assert.equal(facts.outputText, 'Imagine the wildest idea.');
  assert.equal(facts.usage?.outputTokens, 45);
});

test('errors and non-objects give empty facts', () => {
  const empty = { responseModel: null, responseId: null, finishReasons: [], usage: null, outputText: null };
  assert.deepEqual(responseFactsFromJson({ error: { message: 'bad', type: 'invalid_request_error', param: null, code: null } }), empty);
  assert.deepEqual(responseFactsFromJson('text'), empty);
  assert.deepEqual(responseFactsFromJson(null), empty);
});
