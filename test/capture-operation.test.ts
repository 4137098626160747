// Tests for the path → operation mapping and its GenAI semconv counterparts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { genAiOperationName, openaiApiType, operationFromPath } from '../src/capture/operation.ts';

test('maps the OpenAI routes', () => {
  const cases: [string, string][] = [
    ['/v1/chat/completions', 'chat.completions'],
    ['/v1/completions', 'completions'],
    ['/v1/embeddings', 'embeddings'],
    ['/v1/responses', 'responses'],
    ['/v1/audio/transcriptions', 'audio.transcriptions'],
    ['/v1/audio/translations', 'audio.translations'],
    ['/v1/audio/speech', 'audio.speech'],
    ['/v1/images/generations', 'images.generations'],
    ['/v1/images/edits', 'images.edits'],
    ['/v1/images/variations', 'images.variations'],
    ['/v1/files', 'files'],
    ['/v1/batches', 'batches'],
    ['/v1/models', 'models'],
    ['/v1/moderations', 'moderations'],
    ['/v1/realtime', 'realtime'],
    ['/v1/realtime/client_secrets', 'realtime.client_secrets'],
    ['/v1/uploads', 'uploads'],
    ['/v1/vector_stores', 'vector_stores'],
    ['/v1/assistants', 'assistants'],
    ['/v1/threads', 'threads'],
    ['/v1/fine_tuning/jobs', 'fine_tuning.jobs'],
    ['/v1/conversations', 'conversations'],
    ['/v1/something_new/abc', 'something_new'],
  ];
  for (const [path, operation] of cases) assert.equal(operationFromPath(path), operation, path);
});

test('ids never leak into the operation', () => {
  const cases: [string, string][] = [
    ['/v1/files/file-abc123/content', 'files'],
    ['/v1/batches/batch_abc123/cancel', 'batches'],
    ['/v1/models/gpt-4o-mini', 'models'],
    ['/v1/models/ft:gpt-4o-mini:org::abc', 'models'],
    ['/v1/uploads/upload_abc/parts', 'uploads'],
    ['/v1/vector_stores/vs_abc/files/file-1', 'vector_stores'],
    ['/v1/threads/thread_abc/runs/run_abc/steps', 'threads'],
    ['/v1/fine_tuning/jobs/ftjob-abc/events', 'fine_tuning.jobs'],
    ['/v1/conversations/conv_123/items', 'conversations'],
    ['/v1/responses/resp_123', 'responses.retrieve'],
    ['/v1/responses/resp_123/input_items', 'responses.input_items'],
    ['/v1/responses/resp_123/cancel', 'responses.cancel'],
    ['/v1/responses/input_tokens', 'responses.input_tokens'],
    ['/v1/responses/resp_123/unknown_thing', 'responses'],
    ['/v1/chat/completions/chatcmpl-abc', 'chat.completions.retrieve'],
    ['/v1/chat/completions/chatcmpl-abc/messages', 'chat.completions.messages'],
    ['/v1/audio/voices_x1', 'audio'],
  ];
  for (const [path, operation] of cases) assert.equal(operationFromPath(path), operation, path);
  assert.equal(operationFromPath('/v1/file-abc123'), null);
  assert.equal(operationFromPath('/v1/resp_68af0c'), null);
  assert.equal(operationFromPath('/v1/ABC'), null);
});

test('the /v1 prefix is optional; query strings, fragments and slashes are ignored', () => {
  assert.equal(operationFromPath('/chat/completions'), 'chat.completions');
  assert.equal(operationFromPath('/responses/resp_1/input_items?limit=10'), 'responses.input_items');
  assert.equal(operationFromPath('/v1/realtime?model=gpt-realtime'), 'realtime');
  assert.equal(operationFromPath('/v1/embeddings/#x'), 'embeddings');
  assert.equal(operationFromPath('//v1//chat//completions//'), 'chat.completions');
  assert.equal(operationFromPath('/'), null);
  assert.equal(operationFromPath('/v1'), null);
  assert.equal(operationFromPath('/v1?x=1'), null);
  assert.equal(operationFromPath(''), null);
});

test('GenAI operation name and openai.api.type', () => {
  assert.equal(genAiOperationName('chat.completions'), 'chat');
  assert.equal(genAiOperationName('responses'), 'chat');
  assert.equal(genAiOperationName('completions'), 'text_completion');
  assert.equal(genAiOperationName('embeddings'), 'embeddings');
  assert.equal(genAiOperationName('responses.retrieve'), null);
  assert.equal(genAiOperationName('files'), null);
  assert.equal(genAiOperationName(null), null);
  assert.equal(openaiApiType('chat.completions'), 'chat_completions');
  assert.equal(openaiApiType('responses'), 'responses');
  assert.equal(openaiApiType('responses.input_items'), null);
  assert.equal(openaiApiType('completions'), null);
  assert.equal(openaiApiType(null), null);
});
