/** The audit trail end to end: one record per exchange, as the contract in shared/design/audit-record.md says. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { fingerprint } from '../src/audit/record/identity.ts';
import { recordOf } from './support/audit.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { EMULATOR_TEXT, EMULATOR_USAGE, startUpstream, type Upstream } from './support/upstream.ts';

const API_KEY = 'sk-proj-AuditTestSecretKey-0123456789abcdef';
const expectedUsage = {
  inputTokens: EMULATOR_USAGE.prompt,
  outputTokens: EMULATOR_USAGE.completion,
  totalTokens: EMULATOR_USAGE.total,
  cachedTokens: EMULATOR_USAGE.cached,
  reasoningTokens: EMULATOR_USAGE.reasoning,
};

let upstream: Upstream;
let proxy: TestProxy;
let dir: string;

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'audit-'));
}

before(async () => {
  upstream = await startUpstream();
  dir = tempDir();
  const institutions = join(dir, '..', `institutions-${process.pid}.json`);
  writeFileSync(institutions, JSON.stringify({ [fingerprint('sk-mapped-key-0000')]: 'faculty-of-medicine' }));
  proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: dir,
    AUDIT_MAX_BODY_BYTES: '4096',
    INSTITUTIONS_FILE: institutions,
    AUDIT_REDACT_HEADERS: 'x-internal-token',
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ id: string; text: string; status: number }> {
  const res = await request(`${proxy.url}${path}`, {
    method: 'POST',
    body: typeof body === 'string' ? body : JSON.stringify(body),
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', ...headers },
  });
  return { id: String(res.headers['x-proxy-request-id']), text: await res.body.text(), status: res.statusCode };
}

describe('records by content type', () => {
  test('a JSON chat completion: the whole contract', async () => {
    const { id, text } = await post(
      '/v1/chat/completions?trace=1',
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      { 'x-institution-id': 'faculty-of-law', 'x-internal-token': 'secret-internal', 'user-agent': 'audit-test/1.0' },
    );
    const record = await recordOf(proxy, id);
    assert.equal(record._id, id);
    assert.equal(record.schema, 1);
    assert.ok(record.startedAt instanceof Date && record.endedAt instanceof Date);
    assert.ok(record.endedAt.getTime() >= record.startedAt.getTime());
    assert.ok(record.durationMs > 0 && record.upstreamTtfbMs !== null && record.upstreamTtfbMs <= record.durationMs);
    assert.equal(record.institution, 'faculty-of-law');
    assert.equal(record.institutionSource, 'header', 'without POLICY_FILE the header is believed, as before');
    assert.deepEqual(record.client, { address: '127.0.0.1', userAgent: 'audit-test/1.0' });
    assert.deepEqual(record.apiKey, { fingerprint: fingerprint(API_KEY), hint: 'sk-…cdef' });
    assert.equal(record.upstream, upstream.url);
    assert.equal(record.request.method, 'POST');
    assert.equal(record.request.path, '/v1/chat/completions');
    assert.equal(record.request.query, 'trace=1');
    assert.equal(record.request.headers.authorization, '[redacted]');
    assert.equal(record.request.headers['x-internal-token'], '[redacted]');
    assert.equal(record.request.bodyEncoding, 'json');
    assert.deepEqual(record.request.body, { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(record.response.status, 200);
    assert.equal(record.response.bodyEncoding, 'json');
    assert.equal(record.response.bytes, Buffer.byteLength(text));
    assert.equal(record.response.sha256, createHash('sha256').update(text).digest('hex'));
    assert.equal(record.response.streamed, false);
    assert.equal(record.openai?.operation, 'chat.completions');
    assert.equal(record.openai?.requestModel, 'gpt-4o-mini');
    assert.equal(record.openai?.responseModel, 'gpt-4o-mini');
    assert.deepEqual(record.openai?.usage, expectedUsage);
    assert.deepEqual(record.openai?.finishReasons, ['stop']);
    assert.equal(record.openai?.outputText, EMULATOR_TEXT);
    assert.match(record.openai?.upstreamRequestId ?? '', /^req_/);
    assert.equal(record.openai?.organization, 'org-test');
    assert.equal(typeof record.openai?.processingMs, 'number');
    assert.equal(record.outcome, 'ok');
    assert.equal(record.error, null);
    assert.equal(record.trace, null);
    const forwarded = upstream.requests.at(-1);
    assert.equal(forwarded?.headers['x-institution-id'], undefined, 'the institution header is not forwarded');
  });

  test('a stream whose usage lies far beyond the capture cap', async () => {
    const { id, text } = await post(
      '/v1/chat/completions',
      { model: 'gpt-4o', stream: true, stream_options: { include_usage: true }, messages: [] },
      { 'x-test-chunks': '400' },
    );
    assert.ok(text.length > 20_000);
    const record = await recordOf(proxy, id);
    assert.equal(record.response.streamed, true);
    assert.equal(record.response.truncated, true);
    assert.equal(record.response.bodyEncoding, 'text');
    assert.ok((record.response.body as string).length <= 4096);
    assert.equal(record.response.bytes, Buffer.byteLength(text));
    assert.equal(record.response.sha256, createHash('sha256').update(text).digest('hex'));
    assert.equal(record.openai?.stream, true);
    assert.deepEqual(record.openai?.usage, expectedUsage);
    assert.deepEqual(record.openai?.finishReasons, ['stop']);
    assert.ok((record.openai?.outputText ?? '').length > 1000, 'output text assembled past the cap');
  });

  test('a streamed Responses API call', async () => {
    const { id } = await post('/v1/responses', { model: 'gpt-4.1', input: 'hi', stream: true });
    const record = await recordOf(proxy, id);
    assert.equal(record.openai?.operation, 'responses');
    assert.equal(record.openai?.outputText, EMULATOR_TEXT);
    assert.match(record.openai?.responseId ?? '', /^resp_/);
    assert.deepEqual(record.openai?.usage, expectedUsage);
  });

  test('a gzip response is recorded decompressed, its hash over the compressed bytes', async () => {
    const res = await request(`${proxy.url}/v1/models`, { headers: { 'accept-encoding': 'gzip', authorization: `Bearer ${API_KEY}` } });
    const wire = Buffer.from(await res.body.arrayBuffer());
    const record = await recordOf(proxy, String(res.headers['x-proxy-request-id']));
    assert.equal(record.response.headers['content-encoding'], 'gzip');
    assert.equal(record.response.bodyEncoding, 'json');
    assert.equal((record.response.body as { object: string }).object, 'list');
    assert.equal(record.response.bytes, wire.length);
    assert.equal(record.response.sha256, createHash('sha256').update(wire).digest('hex'));
  });

  test('multipart: text fields with values, file parts without their bytes; binary omitted', async () => {
    const client = new OpenAI({ apiKey: API_KEY, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const audio = Buffer.alloc(50_000, 9);
    const transcription = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(audio, 'talk.wav', { type: 'audio/wav' }) }).withResponse();
    const record = await recordOf(proxy, String(transcription.response.headers.get('x-proxy-request-id')));
    assert.equal(record.request.bodyEncoding, 'multipart');
    const parts = record.request.body as Array<Record<string, unknown>>;
    assert.deepEqual(parts.find((p) => p.name === 'model'), { name: 'model', value: 'whisper-1' });
    const file = parts.find((p) => p.name === 'file');
    assert.equal(file?.filename, 'talk.wav');
    assert.equal(file?.bytes, audio.length);
    assert.equal(file?.sha256, createHash('sha256').update(audio).digest('hex'));
    assert.equal(record.openai?.operation, 'audio.transcriptions');
    assert.equal(record.openai?.requestModel, 'whisper-1');
    assert.ok(!readJournalText().includes(audio.subarray(0, 64).toString('latin1')));

    const speech = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'hello' }).withResponse();
    const mp3 = Buffer.from(await speech.data.arrayBuffer());
    const speechRecord = await recordOf(proxy, String(speech.response.headers.get('x-proxy-request-id')));
    assert.equal(speechRecord.response.bodyEncoding, 'omitted');
    assert.equal(speechRecord.response.body, null);
    assert.equal(speechRecord.response.bytes, mp3.length);
    assert.equal(speechRecord.response.sha256, createHash('sha256').update(mp3).digest('hex'));
  });

  test('malformed JSON is stored as text, never an error', async () => {
    const body = '{"model": "gpt-4o", "messages": [ oops';
    const { id } = await post('/v1/chat/completions', body);
    const record = await recordOf(proxy, id);
    assert.equal(record.request.bodyEncoding, 'text');
    assert.equal(record.request.body, body);
    assert.equal(record.outcome, 'ok');
  });

  test('pretty-printed JSON is stored parsed; JSON nested deeper than MongoDB takes is stored as its text', async () => {
    const pretty = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }, null, 2);
    const prettyRecord = await recordOf(proxy, (await post('/v1/chat/completions', pretty)).id);
    assert.equal(prettyRecord.request.bodyEncoding, 'json');
    assert.deepEqual(prettyRecord.request.body, JSON.parse(pretty));
    const deep = `{"model":"gpt-4o-mini","input":${'['.repeat(150)}"x"${']'.repeat(150)}}`;
    const deepRecord = await recordOf(proxy, (await post('/v1/embeddings', deep)).id);
    assert.equal(deepRecord.request.bodyEncoding, 'text');
    assert.equal(deepRecord.request.body, deep);
    assert.equal(deepRecord.response.bodyEncoding, 'json', 'the response, not too deep, is still parsed');
    assert.equal(deepRecord.openai?.requestModel, 'gpt-4o-mini');
  });
});

describe('identity', () => {
  test('the institution comes from INSTITUTIONS_FILE by key fingerprint when no header is sent', async () => {
    const res = await request(`${proxy.url}/v1/models`, { headers: { authorization: 'Bearer sk-mapped-key-0000' } });
    await res.body.dump();
    const record = await recordOf(proxy, String(res.headers['x-proxy-request-id']));
    assert.equal(record.institution, 'faculty-of-medicine');
    assert.equal(record.institutionSource, 'key');
  });

  test('no institution, no key: both null', async () => {
    const res = await request(`${proxy.url}/v1/models`);
    await res.body.dump();
    const record = await recordOf(proxy, String(res.headers['x-proxy-request-id']));
    assert.equal(record.institution, null);
    assert.equal(record.institutionSource, null);
    assert.equal(record.apiKey, null);
  });
});

describe('WebSocket sessions', () => {
  test('one record per session: counts, bytes, close code, usage from response.done; the key in the subprotocol is redacted', async () => {
    const key = 'sk-browser-RealtimeSecret-9876';
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime', `openai-insecure-api-key.${key}`]);
    const ids: string[] = [];
    ws.once('upgrade', (res) => ids.push(String(res.headers['x-proxy-request-id'])));
    await once(ws, 'open');
    let done = 0;
    const twoDone = new Promise<void>((resolve) =>
      ws.on('message', (data: Buffer) => {
        if ((JSON.parse(data.toString()) as { type: string }).type === 'response.done' && ++done === 2) resolve();
      }),
    );
    ws.send(JSON.stringify({ type: 'response.create' }));
    ws.send(JSON.stringify({ type: 'response.create' }));
    await twoDone;
    ws.close(1000, 'bye');
    await once(ws, 'close');
    const record = await recordOf(proxy, ids[0] ?? '');
    assert.equal(record.openai?.operation, 'realtime');
    assert.equal(record.openai?.requestModel, 'gpt-realtime');
    assert.equal(record.response.status, 101);
    assert.equal(record.websocket?.messagesIn, 2);
    assert.ok((record.websocket?.messagesOut ?? 0) >= 3);
    assert.ok((record.websocket?.bytesIn ?? 0) > 0);
    assert.equal(record.websocket?.closeCode, 1000);
    assert.equal(record.websocket?.closedBy, 'client');
    assert.deepEqual(record.openai?.usage, { ...expectedUsage, inputTokens: 22, outputTokens: 14, totalTokens: 36, cachedTokens: 6, reasoningTokens: null });
    assert.equal(record.apiKey?.fingerprint, fingerprint(key));
    assert.match(String(record.request.headers['sec-websocket-protocol']), /openai-insecure-api-key\.\[redacted\]/);
    assert.ok(!readJournalText().includes(key));
  });
});

describe('outcomes', () => {
  test('upstream unreachable and client aborts are recorded with their outcome', async () => {
    const down = await startTestProxy({ UPSTREAM_URL: 'http://127.0.0.1:1', AUDIT_ENABLED: 'true', AUDIT_DIR: tempDir() });
    try {
      const res = await request(`${down.url}/v1/models`);
      await res.body.dump();
      const record = await recordOf(down, String(res.headers['x-proxy-request-id']));
      assert.equal(record.outcome, 'upstream_unreachable');
      assert.equal(record.response.status, 502);
      assert.equal(record.error?.type, 'upstream_unreachable');
      assert.equal((record.response.body as { error: { code: string } }).error.code, 'upstream_unreachable');
    } finally {
      await down.close();
    }

    const controller = new AbortController();
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-chunks': '500', 'x-test-chunk-delay-ms': '10' },
      signal: controller.signal,
    });
    const id = String(res.headers['x-proxy-request-id']);
    for await (const _chunk of res.body) break;
    controller.abort();
    const record = await recordOf(proxy, id);
    assert.equal(record.outcome, 'client_aborted');
    assert.equal(record.response.status, 200);
  });
});

describe('the raw API key appears nowhere', () => {
  test('a key in the query string is redacted in the record (and still forwarded)', async () => {
    const res = await request(`${proxy.url}/v1/models?api-key=${API_KEY}&limit=2`);
    await res.body.dump();
    const record = await recordOf(proxy, String(res.headers['x-proxy-request-id']));
    assert.equal(record.request.query, 'api-key=[redacted]&limit=2');
    assert.equal(upstream.requests.at(-1)?.url, `/v1/models?api-key=${API_KEY}&limit=2`);
  });

  test('not in any journal file', () => {
    assert.ok(!readJournalText().includes(API_KEY));
    assert.ok(readJournalText().includes(fingerprint(API_KEY)));
  });
});

describe('STREAM_USAGE=inject', () => {
  test('usage is recorded although the client did not ask, and the client stream is as without it', async () => {
    const p = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: tempDir(), STREAM_USAGE: 'inject' });
    try {
      const res = await request(`${p.url}/v1/chat/completions`, {
        method: 'POST',
        // A literal JSON.stringify would round: this integer must reach upstream digit for digit.
        body: '{"model":"gpt-4o","stream":true,"seed":12345678901234567890,"messages":[]}',
        headers: { 'content-type': 'application/json' },
      });
      const text = await res.body.text();
      const sent = upstream.requests.at(-1)?.body.toString('utf8') ?? '';
      assert.match(sent, /"stream_options":\{"include_usage":true\}/);
      assert.match(sent, /"seed": ?12345678901234567890/, 'other fields untouched, byte for byte');
      const events = text.split('\n\n').filter((e) => e.startsWith('data: {'));
      assert.ok(events.every((e) => !/"choices":\[\]/.test(e)), 'the usage chunk is removed');
      assert.match(text, /data: \[DONE\]\n\n$/);
      const record = await recordOf(p, String(res.headers['x-proxy-request-id']));
      assert.deepEqual(record.openai?.usage, expectedUsage);
      assert.equal(record.openai?.streamUsageInjected, true);
    } finally {
      await p.close();
    }
  });

  test('a client that asked for usage still gets its usage chunk', async () => {
    const p = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: tempDir(), STREAM_USAGE: 'inject' });
    try {
      const { text } = await (async () => {
        const res = await request(`${p.url}/v1/chat/completions`, {
          method: 'POST',
          body: JSON.stringify({ model: 'gpt-4o', stream: true, stream_options: { include_usage: true }, messages: [] }),
          headers: { 'content-type': 'application/json' },
        });
        return { text: await res.body.text() };
      })();
      assert.match(text, /"choices":\[\],"usage":\{/);
    } finally {
      await p.close();
    }
  });
});

function readJournalText(): string {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ndjson'))
    .map((f) => readFileSync(join(dir, f), 'latin1'))
    .join('');
}
