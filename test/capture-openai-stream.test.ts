// Tests for the OpenAI stream accumulator (chat, legacy completions, Responses) and Realtime usage sums.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BodyCapture } from '../src/capture/body-capture.ts';
import { OpenAIStreamAccumulator, type StreamAccumulatorOptions } from '../src/capture/openai-stream.ts';
import { addRealtimeUsage, addRealtimeUsageFromMessage } from '../src/capture/realtime.ts';
import { SseParser } from '../src/capture/sse.ts';

const MODEL = 'gpt-4o-mini-2024-07-18';

function chatChunk(choices: unknown[], usage: unknown = null): string {
  const chunk = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: MODEL, choices, usage };
  return `data: ${JSON.stringify(chunk)}\n\n`;
}

function delta(content: string, index = 0): unknown {
  return { index, delta: { content }, logprobs: null, finish_reason: null };
}

const CHAT_USAGE = {
  prompt_tokens: 12,
  completion_tokens: 5,
  total_tokens: 17,
  prompt_tokens_details: { cached_tokens: 0 },
  completion_tokens_details: { reasoning_tokens: 0 },
};

function accumulate(text: string, options?: StreamAccumulatorOptions): OpenAIStreamAccumulator {
  const accumulator = new OpenAIStreamAccumulator(options);
  const parser = new SseParser((event, data) => accumulator.push(event, data));
  parser.push(Buffer.from(text));
  parser.end();
  return accumulator;
}

test('chat stream: id, model, text, finish reason, usage; TTFT at the first content delta', () => {
  const stream = [
    chatChunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, finish_reason: null }]),
    chatChunk([delta('Hello')]),
    chatChunk([delta(', world')]),
    chatChunk([{ index: 0, delta: {}, finish_reason: 'stop' }]),
    chatChunk([], CHAT_USAGE),
    'data: [DONE]\n\n',
  ].join('');
  const seen: string[] = [];
  const accumulator = new OpenAIStreamAccumulator({ onFirstToken: () => seen.push('first') });
  const parser = new SseParser((event, data) => {
    accumulator.push(event, data);
    if (accumulator.firstTokenSeen && seen.length === 1) seen.push(data);
  });
  parser.push(Buffer.from(stream));
  assert.equal(seen[0], 'first');
  assert.match(seen[1] ?? '', /"content":"Hello"/);
  assert.deepEqual(accumulator.summary(), {
    responseModel: MODEL,
    responseId: 'chatcmpl-1',
    finishReasons: ['stop'],
    usage: { inputTokens: 12, outputTokens: 5, totalTokens: 17, cachedTokens: 0, reasoningTokens: 0 },
    outputText: 'Hello, world',
    outputTruncated: false,
    error: null,
    firstTokenSeen: true,
    done: true,
  });
});

test('chat stream with n=2: text and finish reasons per choice, in index order', () => {
  const stream = [
    chatChunk([delta('B1', 1), delta('A1', 0)]),
    chatChunk([delta('A2', 0)]),
    chatChunk([{ index: 1, delta: {}, finish_reason: 'length' }, { index: 0, delta: {}, finish_reason: 'stop' }]),
  ].join('');
  const summary = accumulate(stream).summary();
  assert.equal(summary.outputText, 'A1A2\nB1');
  assert.deepEqual(summary.finishReasons, ['stop', 'length']);
  assert.equal(summary.usage, null);
  assert.equal(summary.done, false);
});

test('tool-call deltas count as the first token but add no text', () => {
  const toolCall = { index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '' } };
  const summary = accumulate(chatChunk([{ index: 0, delta: { tool_calls: [toolCall] }, finish_reason: null }])).summary();
  assert.equal(summary.firstTokenSeen, true);
  assert.equal(summary.outputText, null);
});

test('usage is found past a 1 KiB capture cap after 2 MiB of content', async () => {
  const capture = new BodyCapture({ contentType: 'text/event-stream', contentEncoding: null, maxBytes: 1024 });
  const accumulator = new OpenAIStreamAccumulator({ maxOutputChars: 1024 });
  const parser = new SseParser((event, data) => accumulator.push(event, data));
  const piece = 'x'.repeat(1000);
  let sent = 0;
  const feed = (text: string): void => {
    // Split each event in two so events straddle chunk boundaries.
    const bytes = Buffer.from(text);
    for (const chunk of [bytes.subarray(0, 37), bytes.subarray(37)]) {
      capture.push(chunk);
      parser.push(chunk);
    }
  };
  while (sent < 2 * 1024 * 1024) {
    feed(chatChunk([delta(piece)]));
    sent += piece.length;
  }
  feed(chatChunk([{ index: 0, delta: {}, finish_reason: 'length' }]));
  feed(chatChunk([], CHAT_USAGE));
  feed('data: [DONE]\n\n');
  parser.end();

  const summary = accumulator.summary();
  assert.deepEqual(summary.usage, { inputTokens: 12, outputTokens: 5, totalTokens: 17, cachedTokens: 0, reasoningTokens: 0 });
  assert.deepEqual(summary.finishReasons, ['length']);
  assert.equal(summary.outputText, 'x'.repeat(1024));
  assert.equal(summary.outputTruncated, true);
  const body = await capture.finish();
  assert.equal(body.truncated, true);
  assert.equal(body.bodyEncoding, 'text');
  assert.equal(typeof body.body === 'string' && body.body.length, 1024);
});

test('legacy text_completion stream', () => {
  const chunk = (text: string, finish: string | null): string =>
    `data: ${JSON.stringify({ id: 'cmpl-1', object: 'text_completion', created: 1, model: 'gpt-3.5-turbo-instruct', choices: [{ text, index: 0, logprobs: null, finish_reason: finish }] })}\n\n`;
  const summary = accumulate(chunk('Once', null) + chunk(' upon', null) + chunk('', 'length') + 'data: [DONE]\n\n').summary();
  assert.equal(summary.responseId, 'cmpl-1');
  assert.equal(summary.responseModel, 'gpt-3.5-turbo-instruct');
  assert.equal(summary.outputText, 'Once upon');
  assert.deepEqual(summary.finishReasons, ['length']);
  assert.equal(summary.done, true);
});

function responsesEvent(type: string, body: Record<string, unknown>, sequence: number): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence, ...body })}\n\n`;
}

const RESPONSE = { id: 'resp_1', object: 'response', model: 'gpt-4.1-2025-04-14', output: [], usage: null };
const RESPONSES_USAGE = {
  input_tokens: 36,
  input_tokens_details: { cached_tokens: 0 },
  output_tokens: 4,
  output_tokens_details: { reasoning_tokens: 0 },
  total_tokens: 40,
};

test('Responses stream: text from output_text deltas, usage and status from the terminal event', () => {
  let seq = 0;
  const stream = [
    responsesEvent('response.created', { response: { ...RESPONSE, status: 'in_progress' } }, seq++),
    responsesEvent('response.in_progress', { response: { ...RESPONSE, status: 'in_progress' } }, seq++),
    responsesEvent('response.output_item.added', { output_index: 0, item: { type: 'message', id: 'msg_1' } }, seq++),
    responsesEvent('response.reasoning_summary_text.delta', { delta: 'thinking' }, seq++),
    responsesEvent('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: 'Hi' }, seq++),
    responsesEvent('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: ' there' }, seq++),
    responsesEvent('response.output_text.done', { text: 'Hi there' }, seq++),
    responsesEvent('response.completed', { response: { ...RESPONSE, status: 'completed', usage: RESPONSES_USAGE } }, seq++),
  ].join('');
  const firstTokenAt: (string | null)[] = [];
  const accumulator = new OpenAIStreamAccumulator({ onFirstToken: () => firstTokenAt.push(current) });
  let current: string | null = null;
  const parser = new SseParser((event, data) => {
    current = event;
    accumulator.push(event, data);
  });
  for (const byte of Buffer.from(stream)) parser.push(Buffer.of(byte));
  assert.deepEqual(firstTokenAt, ['response.output_text.delta']);
  assert.deepEqual(accumulator.summary(), {
    responseModel: 'gpt-4.1-2025-04-14',
    responseId: 'resp_1',
    finishReasons: ['completed'],
    usage: { inputTokens: 36, outputTokens: 4, totalTokens: 40, cachedTokens: 0, reasoningTokens: 0 },
    outputText: 'Hi there',
    outputTruncated: false,
    error: null,
    firstTokenSeen: true,
    done: true,
  });
});

test('Responses stream: incomplete and failed terminal events', () => {
  const incomplete = accumulate(
    responsesEvent('response.incomplete', { response: { ...RESPONSE, status: 'incomplete', usage: RESPONSES_USAGE } }, 1),
  ).summary();
  assert.deepEqual(incomplete.finishReasons, ['incomplete']);
  assert.equal(incomplete.usage?.totalTokens, 40);

  const failed = accumulate(
    responsesEvent('response.failed', { response: { ...RESPONSE, status: 'failed', error: { code: 'server_error', message: 'boom' } } }, 1),
  ).summary();
  assert.deepEqual(failed.finishReasons, ['failed']);
  assert.deepEqual(failed.error, { type: 'server_error', message: 'boom' });
  assert.equal(failed.done, true);
});

test('mid-stream errors: `event: error`, a data `error` key, and non-JSON error data', () => {
  const responses = accumulate(
    responsesEvent('response.output_text.delta', { delta: 'partial' }, 1) +
      'event: error\ndata: {"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null,"sequence_number":2}\n\n',
  ).summary();
  assert.deepEqual(responses.error, { type: 'rate_limit_exceeded', message: 'slow down' });
  assert.equal(responses.outputText, 'partial');
  assert.equal(responses.done, false);

  const chat = accumulate(
    chatChunk([delta('a')]) + 'data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}\n\n',
  ).summary();
  assert.deepEqual(chat.error, { type: 'server_error', message: 'The server had an error' });

  assert.deepEqual(accumulate('event: error\ndata: upstream went away\n\n').summary().error, {
    type: 'error',
    message: 'upstream went away',
  });
});

test('malformed event data is ignored', () => {
  const summary = accumulate('data: {not json\n\ndata: 42\n\n' + chatChunk([delta('ok')])).summary();
  assert.equal(summary.outputText, 'ok');
  assert.equal(summary.error, null);
});

test('Realtime: response.done usage summed over a session', () => {
  const done = (input: number, output: number, cached: number): unknown => ({
    type: 'response.done',
    event_id: 'event_1',
    response: {
      id: 'resp_1',
      status: 'completed',
      usage: {
        total_tokens: input + output,
        input_tokens: input,
        output_tokens: output,
        input_token_details: { cached_tokens: cached, text_tokens: input, audio_tokens: 0 },
        output_token_details: { text_tokens: output, audio_tokens: 0 },
      },
    },
  });
  let sum = addRealtimeUsage(null, { type: 'session.created', session: {} });
  assert.equal(sum, null);
  sum = addRealtimeUsage(sum, done(100, 20, 0));
  sum = addRealtimeUsage(sum, { type: 'response.output_audio.delta', delta: 'AAAA' });
  sum = addRealtimeUsageFromMessage(sum, JSON.stringify(done(50, 10, 40)));
  sum = addRealtimeUsageFromMessage(sum, '{"type":"response.done", broken');
  assert.deepEqual(sum, { inputTokens: 150, outputTokens: 30, totalTokens: 180, cachedTokens: 40, reasoningTokens: null, audioInputTokens: 0, audioOutputTokens: 0 });
});
