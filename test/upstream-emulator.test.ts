/**
 * The emulator checked against the official SDK, so proxy tests can trust that what they forward
 * is what a real client would accept. The proxy itself is not involved here.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { after, before, test } from 'node:test';
import { text } from 'node:stream/consumers';
import OpenAI, { toFile } from 'openai';
import WebSocket from 'ws';
import {
  EMULATOR_TEXT,
  EMULATOR_USAGE,
  emulatorEmbedding,
  patternBytes,
  startUpstream,
  type Upstream,
} from './support/upstream.ts';

let upstream: Upstream;
let client: OpenAI;

before(async () => {
  upstream = await startUpstream();
  client = new OpenAI({ apiKey: 'sk-test', baseURL: `${upstream.url}/v1`, maxRetries: 0 });
});

after(() => upstream.close());

const U = EMULATOR_USAGE;

void test('chat completion answers with the fixed text, usage and OpenAI headers', async () => {
  const { data, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
    .withResponse();
  assert.equal(data.choices[0]?.message.content, EMULATOR_TEXT);
  assert.equal(data.model, 'gpt-4o-mini');
  assert.equal(data.usage?.prompt_tokens_details?.cached_tokens, U.cached);
  assert.match(response.headers.get('x-request-id') ?? '', /^req_[0-9a-f]{32}$/);
  const recorded = upstream.requests.at(-1);
  assert.equal(recorded?.url, '/v1/chat/completions');
  assert.deepEqual(JSON.parse(recorded?.body.toString() ?? ''), {
    model: 'gpt-4o-mini',
    messages: [{ role: 'user', content: 'hi' }],
  });
});

void test('streamed chat completion carries usage in a final choice-less chunk', async () => {
  const stream = await client.chat.completions.create(
    { model: 'gpt-4o', messages: [], stream: true, stream_options: { include_usage: true } },
    { headers: { 'x-test-chunks': '3' } },
  );
  const text: string[] = [];
  const usages: unknown[] = [];
  for await (const chunk of stream) {
    text.push(chunk.choices[0]?.delta.content ?? '');
    usages.push(chunk.usage);
  }
  assert.equal(text.join(''), 'Hello world from');
  assert.equal(usages.length, 6);
  assert.ok(usages.slice(0, -1).every((u) => u === null));
  assert.deepEqual(usages.at(-1), {
    prompt_tokens: U.prompt,
    completion_tokens: U.completion,
    total_tokens: U.total,
    prompt_tokens_details: { cached_tokens: U.cached },
    completion_tokens_details: { reasoning_tokens: U.reasoning },
  });
});

void test('streamed Responses call accumulates in the SDK to the final response', async () => {
  const stream = client.responses.stream({ model: 'gpt-4o-mini', input: 'hi' });
  const seq: number[] = [];
  for await (const event of stream) seq.push(event.sequence_number);
  const final = await stream.finalResponse();
  assert.equal(final.output_text, EMULATOR_TEXT);
  assert.equal(final.usage?.output_tokens_details.reasoning_tokens, U.reasoning);
  assert.deepEqual(seq, seq.map((_, i) => i));
});

void test('embeddings decode from the base64 the SDK asks for, and as floats', async () => {
  const input = ['a', 'b'];
  const b64 = await client.embeddings.create({ model: 'text-embedding-3-small', input });
  assert.deepEqual(b64.data.map((d) => d.embedding), [emulatorEmbedding(0), emulatorEmbedding(1)]);
  const floats = await client.embeddings.create({ model: 'm', input: 'a', encoding_format: 'float' });
  assert.deepEqual(floats.data[0]?.embedding, emulatorEmbedding(0));
  assert.equal(floats.usage.prompt_tokens, U.prompt);
});

void test('multipart uploads are parsed: transcription and file upload', async () => {
  const file = await toFile(Buffer.alloc(1234, 1), 'a.mp3');
  const t = await client.audio.transcriptions.create({ model: 'whisper-1', file });
  assert.equal(t.text, 'transcribed 1234 bytes');
  const f = await client.files.create({ purpose: 'batch', file: await toFile(Buffer.from('{}\n'), 'b.jsonl') });
  assert.deepEqual([f.bytes, f.filename, f.purpose, f.status], [3, 'b.jsonl', 'batch', 'processed']);
  const content = await client.files.content(f.id);
  assert.equal(await content.text(), '{}\n');
});

void test('/download streams exactly the requested deterministic bytes', async () => {
  for (const n of [0, 1, 100_000, 5 * 1024 * 1024 + 3]) {
    const res = await fetch(`${upstream.url}/download?bytes=${n}`);
    assert.equal(res.headers.get('content-length'), String(n));
    const got = Buffer.from(await res.arrayBuffer());
    assert.equal(got.length, n);
    assert.ok(got.equals(patternBytes(n)), `content of ${n} bytes`);
  }
});

void test('/sink and /echo report body size and hash', async () => {
  const body = new Uint8Array(patternBytes(300_000));
  const sha256 = createHash('sha256').update(body).digest('hex');
  const sink = await fetch(`${upstream.url}/sink`, { method: 'POST', body });
  assert.deepEqual(await sink.json(), { bytes: body.length, sha256 });
  assert.equal(upstream.requests.at(-1)?.body.length, 0);
  const echo = await fetch(`${upstream.url}/echo/x?y=1`, { method: 'PUT', body, headers: { 'x-a': 'b' } });
  const seen = (await echo.json()) as { method: string; url: string; headers: Record<string, string>; bodySha256: string };
  assert.deepEqual([seen.method, seen.url, seen.headers['x-a'], seen.bodySha256], ['PUT', '/echo/x?y=1', 'b', sha256]);
});

void test('x-test-status gives the SDK its matching error class', async () => {
  const call = (status: string): Promise<unknown> =>
    client.chat.completions.create({ model: 'm', messages: [] }, { headers: { 'x-test-status': status } });
  await assert.rejects(call('429'), (e) => e instanceof OpenAI.RateLimitError && e.code === 'rate_limit_exceeded');
  await assert.rejects(call('401'), (e) => e instanceof OpenAI.AuthenticationError && e.code === 'invalid_api_key');
  await assert.rejects(call('500'), (e) => e instanceof OpenAI.InternalServerError && e.type === 'server_error');
});

void test('gzip on /v1/models when accepted, and faults behave', async () => {
  const models = await fetch(`${upstream.url}/v1/models`, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(models.headers.get('content-encoding'), 'gzip');
  assert.equal(((await models.json()) as { object: string }).object, 'list');
  await assert.rejects(fetch(`${upstream.url}/echo`, { headers: { 'x-test-reset': 'before-headers' } }));
  const mid = await fetch(`${upstream.url}/download?bytes=1000000`, { headers: { 'x-test-reset': 'mid-body' } });
  await assert.rejects(mid.arrayBuffer());
  const before = upstream.aborted;
  const ac = new AbortController();
  const hung = fetch(`${upstream.url}/echo`, { headers: { 'x-test-hang': 'headers' }, signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(hung);
  await upstream.waitForAborted(before + 1);
  assert.equal(upstream.aborted, before + 1);
});

function nextMessage(ws: WebSocket): Promise<{ type: string } & Record<string, unknown>> {
  return new Promise((resolve) => ws.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()) as never)));
}

void test('realtime WebSocket greets, answers response.create and rejects missing auth', async () => {
  const wsUrl = `${upstream.url.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`;
  const ws = new WebSocket(wsUrl, ['realtime'], { headers: { authorization: 'Bearer sk-test' } });
  const greeting = await nextMessage(ws);
  assert.equal(greeting.type, 'session.created');
  assert.equal(ws.protocol, 'realtime');
  const events: string[] = [];
  const done = new Promise<Record<string, unknown>>((resolve) =>
    ws.on('message', (data: Buffer) => {
      const event = JSON.parse(data.toString()) as { type: string; response?: Record<string, unknown> };
      events.push(event.type);
      if (event.type === 'response.done') resolve(event.response ?? {});
    }),
  );
  ws.send(JSON.stringify({ type: 'response.create' }));
  const response = await done;
  assert.deepEqual(events, ['response.output_text.delta', 'response.output_text.delta', 'response.output_text.delta', 'response.done']);
  assert.equal((response.usage as { total_tokens: number }).total_tokens, U.total);
  ws.close();
  assert.deepEqual(upstream.wsSessions.at(-1)?.received, ['{"type":"response.create"}']);

  const anonymous = new WebSocket(wsUrl);
  anonymous.on('error', () => undefined); // terminate() during the handshake reports an error we expect
  const rejected = await new Promise<IncomingMessage>((resolve) => anonymous.on('unexpected-response', (_req, res) => resolve(res)));
  const body = await text(rejected);
  anonymous.terminate();
  assert.equal(rejected.statusCode, 401);
  assert.equal((JSON.parse(body) as { error: { code: string } }).error.code, 'invalid_api_key');
});
