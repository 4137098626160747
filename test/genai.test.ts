/** The pure span builders of src/telemetry/genai.ts, from hand-made exchange facts: no sockets, no SDK. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { BodyEncoding, OpenAIInfo, Outcome } from '../src/audit/record/record.ts';
import { upstreamErrorCode, type ExchangeFacts } from '../src/capture/facts.ts';
import { isObject } from '../src/capture/guards.ts';
import {
  clientOutcome,
  clientSpanName,
  contentAttributes,
  genaiAttributes,
  routeTemplate,
  serverOutcome,
} from '../src/telemetry/genai.ts';
import { operationErrorType } from '../src/telemetry/error-type.ts';
import { factsOf, openaiInfo, plainExchange } from './support/records.ts';

function openai(over: Partial<OpenAIInfo> = {}): OpenAIInfo {
  return openaiInfo({
    requestModel: 'gpt-4o',
    responseModel: 'gpt-4o-2024-08-06',
    usage: { inputTokens: 11, outputTokens: 7, totalTokens: 18, cachedTokens: 3, reasoningTokens: 2 },
    responseId: 'chatcmpl-abc',
    outputText: 'Hello there',
    upstreamRequestId: 'req_1',
    organization: 'org-test',
    processingMs: 12,
    ...over,
  });
}

interface RecordOptions {
  method?: string;
  path?: string;
  body?: unknown;
  bodyEncoding?: BodyEncoding;
  status?: number | null;
  responseBody?: unknown;
  responseEncoding?: BodyEncoding;
  openai?: OpenAIInfo | null;
  outcome?: Outcome;
  error?: { type: string; message: string } | null;
  ttfbMs?: number | null;
}

/** Facts as the capture computes them (capture/facts.ts) for an exchange with these bodies. */
function facts(o: RecordOptions = {}): ExchangeFacts {
  const info = o.openai === undefined ? openai() : o.openai;
  const requestJson = o.body !== undefined && (o.bodyEncoding ?? 'json') === 'json' ? o.body : undefined;
  const responseJson = o.responseBody !== undefined && (o.responseEncoding ?? 'json') === 'json' ? o.responseBody : undefined;
  const status = o.status === undefined ? 200 : o.status;
  const exchange = Object.assign(plainExchange(o.method, o.path), { startHr: 0, endHr: 1000, status, origin: 'https://api.openai.com' });
  return factsOf(
    {
      ...(info ?? {}),
      operation: info?.operation ?? null,
      ttfbMs: o.ttfbMs === undefined ? 250 : o.ttfbMs,
      requestParameters: isObject(requestJson) ? requestJson : {},
      requestContent: requestJson,
      outcome: o.outcome ?? 'ok',
      error: o.error ?? null,
      upstreamErrorCode: upstreamErrorCode(status, isObject(responseJson) ? responseJson : {}),
    },
    exchange,
  );
}

describe('routeTemplate', () => {
  test('keeps named segments and versions, replaces id-like ones', () => {
    assert.equal(routeTemplate('/v1/chat/completions'), '/v1/chat/completions');
    assert.equal(routeTemplate('/v1/realtime/client_secrets'), '/v1/realtime/client_secrets');
    assert.equal(routeTemplate('/v1/files/file-abc123/content'), '/v1/files/{id}/content');
    assert.equal(routeTemplate('/v1/responses/resp_68af00/input_items'), '/v1/responses/{id}/input_items');
    assert.equal(routeTemplate('/v1/models/gpt-4o'), '/v1/models/{id}');
    assert.equal(routeTemplate('/v2/batches/batch_9'), '/v2/batches/{id}');
    assert.equal(routeTemplate('/'), '/');
  });

  test('gives the same routes once its memo of recent paths has filled and been emptied', () => {
    for (let i = 0; i < 1000; i++) assert.equal(routeTemplate(`/v1/files/file-${i}/content`), '/v1/files/{id}/content');
    assert.equal(routeTemplate('/v1/chat/completions'), '/v1/chat/completions');
    assert.equal(routeTemplate('/v1/files/file-7/content'), '/v1/files/{id}/content');
  });
});

describe('clientSpanName', () => {
  test('`{operation} {model}` for inference calls', () => {
    assert.equal(clientSpanName('POST', facts()), 'chat gpt-4o');
    assert.equal(clientSpanName('POST', facts({ openai: openai({ operation: 'responses', requestModel: 'o3' }) })), 'chat o3');
    assert.equal(clientSpanName('POST', facts({ openai: openai({ operation: 'completions', requestModel: 'davinci-002' }) })), 'text_completion davinci-002');
    assert.equal(clientSpanName('POST', facts({ openai: openai({ operation: 'embeddings', requestModel: 'text-embedding-3-small' }) })), 'embeddings text-embedding-3-small');
  });

  test('the operation alone without a model, the method for anything else', () => {
    assert.equal(clientSpanName('POST', facts({ openai: openai({ requestModel: null }) })), 'chat');
    assert.equal(clientSpanName('GET', facts({ openai: openai({ operation: 'files' }) })), 'GET');
    assert.equal(clientSpanName('GET', facts({ openai: null })), 'GET');
  });
});

describe('genaiAttributes', () => {
  test('a chat completion: operation, provider, api type, models, response, usage', () => {
    assert.deepEqual(genaiAttributes(facts()), {
      'gen_ai.operation.name': 'chat',
      'gen_ai.provider.name': 'openai',
      'openai.api.type': 'chat_completions',
      'gen_ai.request.model': 'gpt-4o',
      'gen_ai.request.stream': undefined,
      'gen_ai.response.model': 'gpt-4o-2024-08-06',
      'gen_ai.response.id': 'chatcmpl-abc',
      'gen_ai.response.finish_reasons': ['stop'],
      'gen_ai.response.time_to_first_chunk': undefined,
      'gen_ai.usage.input_tokens': 11,
      'gen_ai.usage.output_tokens': 7,
      'gen_ai.usage.cache_read.input_tokens': 3,
      'gen_ai.usage.reasoning.output_tokens': 2,
      'gen_ai.request.max_tokens': undefined,
      'gen_ai.request.temperature': undefined,
      'gen_ai.request.top_p': undefined,
      'gen_ai.request.frequency_penalty': undefined,
      'gen_ai.request.presence_penalty': undefined,
      'gen_ai.request.stop_sequences': undefined,
      'gen_ai.request.seed': undefined,
      'gen_ai.request.choice.count': undefined,
    });
  });

  test('request parameters from the JSON body', () => {
    const body = { model: 'gpt-4o', temperature: 0.2, top_p: 0.5, seed: 7, n: 3, max_tokens: 10, max_completion_tokens: 20, frequency_penalty: 0.1, presence_penalty: -0.5, stop: ['\n', 'END'] };
    const a = genaiAttributes(facts({ body }));
    assert.equal(a['gen_ai.request.temperature'], 0.2);
    assert.equal(a['gen_ai.request.top_p'], 0.5);
    assert.equal(a['gen_ai.request.seed'], 7);
    assert.equal(a['gen_ai.request.choice.count'], 3);
    assert.equal(a['gen_ai.request.max_tokens'], 20, 'max_completion_tokens wins over the deprecated max_tokens');
    assert.equal(a['gen_ai.request.frequency_penalty'], 0.1);
    assert.equal(a['gen_ai.request.presence_penalty'], -0.5);
    assert.deepEqual(a['gen_ai.request.stop_sequences'], ['\n', 'END']);
  });

  test('n=1 is not reported, max_output_tokens (Responses) and a single stop string are', () => {
    const a = genaiAttributes(facts({ body: { n: 1, max_output_tokens: 99, stop: 'END', temperature: 0 }, openai: openai({ operation: 'responses' }) }));
    assert.equal(a['gen_ai.request.choice.count'], undefined);
    assert.equal(a['gen_ai.request.max_tokens'], 99);
    assert.deepEqual(a['gen_ai.request.stop_sequences'], ['END']);
    assert.equal(a['gen_ai.request.temperature'], 0, 'zero is a value, not an absence');
    assert.equal(a['openai.api.type'], 'responses');
  });

  test('parameters of the wrong type or from a body that is not JSON are left out', () => {
    assert.equal(genaiAttributes(facts({ body: { temperature: '0.2' } }))['gen_ai.request.temperature'], undefined);
    assert.equal(genaiAttributes(facts({ body: 'temperature=0.2', bodyEncoding: 'text' }))['gen_ai.request.temperature'], undefined);
  });

  test('streaming: the stream flag and the time to the first chunk in seconds', () => {
    const a = genaiAttributes(facts({ openai: openai({ stream: true }), ttfbMs: 250 }));
    assert.equal(a['gen_ai.request.stream'], true);
    assert.equal(a['gen_ai.response.time_to_first_chunk'], 0.25);
    assert.equal(genaiAttributes(facts({ openai: openai({ stream: true }), ttfbMs: null }))['gen_ai.response.time_to_first_chunk'], undefined);
  });

  test('missing usage and finish reasons leave their attributes out', () => {
    const a = genaiAttributes(facts({ openai: openai({ usage: null, finishReasons: [], responseId: null }) }));
    assert.equal(a['gen_ai.usage.input_tokens'], undefined);
    assert.equal(a['gen_ai.response.finish_reasons'], undefined);
    assert.equal(a['gen_ai.response.id'], undefined);
  });

  test('calls the GenAI conventions do not cover get none', () => {
    assert.deepEqual(genaiAttributes(facts({ openai: openai({ operation: 'files' }) })), {});
    assert.deepEqual(genaiAttributes(facts({ openai: openai({ operation: 'realtime' }) })), {});
    assert.deepEqual(genaiAttributes(facts({ openai: null })), {});
  });

  test('embeddings and legacy completions have their own operation names and no api type', () => {
    const e = genaiAttributes(facts({ openai: openai({ operation: 'embeddings' }) }));
    assert.equal(e['gen_ai.operation.name'], 'embeddings');
    assert.equal(e['openai.api.type'], undefined);
    assert.equal(genaiAttributes(facts({ openai: openai({ operation: 'completions' }) }))['gen_ai.operation.name'], 'text_completion');
  });
});

describe('operationErrorType (error-type.ts, shared by span and metric)', () => {
  test("the proxy's own error code comes first", () => {
    const r = facts({ status: 502, outcome: 'upstream_unreachable', error: { type: 'upstream_unreachable', message: 'connect ECONNREFUSED' } });
    assert.equal(operationErrorType(r), 'upstream_unreachable');
  });

  test("then upstream's OpenAI error code, then its error type", () => {
    const rateLimited = { error: { message: 'slow down', type: 'requests', param: null, code: 'rate_limit_exceeded' } };
    assert.equal(operationErrorType(facts({ status: 429, responseBody: rateLimited })), 'rate_limit_exceeded');
    const serverError = { error: { message: 'oops', type: 'server_error', param: null, code: null } };
    assert.equal(operationErrorType(facts({ status: 500, responseBody: serverError })), 'server_error');
  });

  test('then the status code', () => {
    assert.equal(operationErrorType(facts({ status: 404, responseBody: 'Not Found', responseEncoding: 'text' })), '404');
    assert.equal(operationErrorType(facts({ status: 503, responseBody: { detail: 'busy' } })), '503');
    assert.equal(operationErrorType(facts({ status: 400, responseBody: { error: { code: '' } } })), '400');
  });

  test('undefined for a success', () => {
    assert.equal(operationErrorType(facts()), undefined);
    assert.equal(operationErrorType(facts({ status: 304 })), undefined);
    assert.equal(operationErrorType(facts({ status: null })), undefined);
  });
});

describe('serverOutcome and clientOutcome', () => {
  test('a success: no error on either span, the status on both', () => {
    const r = facts();
    assert.deepEqual(serverOutcome(r), {
      error: false,
      message: undefined,
      attributes: { 'http.response.status_code': 200, 'error.type': undefined, 'openai_proxy.outcome': 'ok', 'openai_proxy.institution': undefined },
    });
    assert.equal(clientOutcome(r, 200).error, false);
    assert.equal(clientOutcome(r, 200).attributes['http.response.status_code'], 200);
  });

  test("an upstream 4xx fails the CLIENT span only: it is the caller's doing", () => {
    const r = facts({ status: 429, responseBody: { error: { code: 'rate_limit_exceeded' } } });
    const client = clientOutcome(r, 429);
    assert.equal(client.error, true);
    assert.equal(client.attributes['error.type'], 'rate_limit_exceeded');
    const server = serverOutcome(r);
    assert.equal(server.error, false);
    assert.equal(server.attributes['error.type'], undefined);
    assert.equal(server.attributes['http.response.status_code'], 429);
  });

  test('an upstream 5xx fails both', () => {
    const r = facts({ status: 500 });
    assert.equal(clientOutcome(r, 500).error, true);
    assert.equal(serverOutcome(r).error, true);
    assert.equal(serverOutcome(r).attributes['error.type'], '500');
  });

  test("an unreachable upstream fails both; the proxy's 502 is no upstream status", () => {
    const r = facts({ status: 502, outcome: 'upstream_unreachable', error: { type: 'upstream_unreachable', message: 'refused' } });
    const client = clientOutcome(r, null);
    assert.equal(client.error, true);
    assert.equal(client.message, 'refused');
    assert.equal(client.attributes['error.type'], 'upstream_unreachable');
    assert.equal(client.attributes['http.response.status_code'], undefined);
    assert.equal(serverOutcome(r).error, true);
    assert.equal(serverOutcome(r).attributes['http.response.status_code'], 502);
  });

  test('a reset after the head fails both, even with a 200', () => {
    const r = facts({ status: 200, outcome: 'upstream_reset', error: { type: 'upstream_reset', message: 'socket hang up' } });
    assert.equal(clientOutcome(r, 200).attributes['error.type'], 'upstream_reset');
    assert.equal(serverOutcome(r).attributes['error.type'], 'upstream_reset');
  });

  test('a caller hanging up is no error and no error.type', () => {
    const r = facts({ status: 200, outcome: 'client_aborted', error: { type: 'client_aborted', message: 'gone' } });
    for (const o of [serverOutcome(r), clientOutcome(r, 200)]) {
      assert.equal(o.error, false);
      assert.equal(o.attributes['error.type'], undefined);
      assert.equal(o.attributes['openai_proxy.outcome'], 'client_aborted');
    }
    // ...unless upstream had failed anyway: then the status says why.
    const failed = facts({ status: 500, outcome: 'client_aborted', error: { type: 'client_aborted', message: 'gone' } });
    assert.equal(clientOutcome(failed, 500).attributes['error.type'], '500');
  });

  test('a refusal by the proxy: a 4xx is the caller\'s, a 503 is ours', () => {
    const bad = facts({ status: 400, outcome: 'rejected', error: { type: 'invalid_request_target', message: 'bad' } });
    assert.equal(serverOutcome(bad).error, false);
    const unavailable = facts({ status: 503, outcome: 'rejected', error: { type: 'audit_unavailable', message: 'journal' } });
    assert.equal(serverOutcome(unavailable).error, true);
    assert.equal(serverOutcome(unavailable).attributes['error.type'], 'audit_unavailable');
  });
});

describe('contentAttributes', () => {
  const parse = (value: unknown): unknown => JSON.parse(value as string);

  test('chat messages in the GenAI message schema, with tool calls, tool results and images', () => {
    const body = {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'Be terse.' },
        { role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'https://x/cat.png' } }] },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"cat"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'a cat' },
      ],
    };
    const a = contentAttributes(facts({ body }));
    assert.deepEqual(parse(a['gen_ai.input.messages']), [
      { role: 'system', parts: [{ type: 'text', content: 'Be terse.' }] },
      { role: 'user', parts: [{ type: 'text', content: 'What is this?' }, { type: 'uri', modality: 'image', uri: 'https://x/cat.png' }] },
      { role: 'assistant', parts: [{ type: 'tool_call', id: 'call_1', name: 'lookup', arguments: '{"q":"cat"}' }] },
      { role: 'tool', parts: [{ type: 'tool_call_response', id: 'call_1', response: 'a cat' }] },
    ]);
    assert.deepEqual(parse(a['gen_ai.output.messages']), [
      { role: 'assistant', parts: [{ type: 'text', content: 'Hello there' }], finish_reason: 'stop' },
    ]);
    assert.equal(a['gen_ai.system_instructions'], undefined);
  });

  test('Responses: instructions apart, input items including function calls and their outputs', () => {
    const body = {
      model: 'gpt-4o',
      instructions: 'Answer in French.',
      input: [
        { role: 'user', content: [{ type: 'input_text', text: 'Hi' }] },
        { type: 'function_call', call_id: 'fc_1', name: 'now', arguments: '{}' },
        { type: 'function_call_output', call_id: 'fc_1', output: '12:00' },
      ],
    };
    const a = contentAttributes(facts({ body, openai: openai({ operation: 'responses' }) }));
    assert.deepEqual(parse(a['gen_ai.system_instructions']), [{ type: 'text', content: 'Answer in French.' }]);
    assert.deepEqual(parse(a['gen_ai.input.messages']), [
      { role: 'user', parts: [{ type: 'text', content: 'Hi' }] },
      { role: 'assistant', parts: [{ type: 'tool_call', id: 'fc_1', name: 'now', arguments: '{}' }] },
      { role: 'tool', parts: [{ type: 'tool_call_response', id: 'fc_1', response: '12:00' }] },
    ]);
  });

  test('a plain string input or legacy prompt is one user message', () => {
    const responses = contentAttributes(facts({ body: { input: 'Hi' }, openai: openai({ operation: 'responses' }) }));
    assert.deepEqual(parse(responses['gen_ai.input.messages']), [{ role: 'user', parts: [{ type: 'text', content: 'Hi' }] }]);
    const legacy = contentAttributes(facts({ body: { prompt: ['a', 'b'] }, openai: openai({ operation: 'completions' }) }));
    assert.deepEqual(parse(legacy['gen_ai.input.messages']), [
      { role: 'user', parts: [{ type: 'text', content: 'a' }] },
      { role: 'user', parts: [{ type: 'text', content: 'b' }] },
    ]);
  });

  test('no output message without output text; finish_reason null without one', () => {
    assert.equal(contentAttributes(facts({ openai: openai({ outputText: null }) }))['gen_ai.output.messages'], undefined);
    const a = contentAttributes(facts({ openai: openai({ finishReasons: [] }) }));
    assert.deepEqual(parse(a['gen_ai.output.messages']), [{ role: 'assistant', parts: [{ type: 'text', content: 'Hello there' }], finish_reason: null }]);
  });

  test('nothing from a body that is not JSON, and nothing for calls outside the GenAI conventions', () => {
    assert.equal(contentAttributes(facts({ body: 'raw', bodyEncoding: 'text' }))['gen_ai.input.messages'], undefined);
    assert.deepEqual(contentAttributes(facts({ body: { prompt: 'a cat' }, openai: openai({ operation: 'images.generations' }) })), {});
    assert.deepEqual(contentAttributes(facts({ body: { messages: [] }, openai: null })), {});
  });
});
