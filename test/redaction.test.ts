/**
 * Redaction by rule (issue 13, finding 8): credential names in headers, queries, JSON members and
 * form fields, OpenAI-shaped keys anywhere text is stored, the Realtime subprotocol in any case,
 * and the whole bearer credential fingerprinted. End to end through the proxy with the audit
 * journal on, plus the name and shape rules as tables.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FormData, request } from 'undici';
import { WebSocket } from 'ws';
import { fingerprint, HeaderRedactor } from '../src/audit/record/identity.ts';
import { JSON_TEXT, type AuditRecord, type CapturedBody } from '../src/audit/record/record.ts';
import { recordingObserver } from './support/recording.ts';
import { MalformedRequestError } from '../src/proxy/errors.ts';
import { newExchange } from '../src/proxy/observer.ts';
import type { WebSocketExchange } from '../src/proxy/websocket.ts';
import { redactQuery } from '../src/capture/redact-query.ts';
import { isSecretName, maskKeys, redactBody } from '../src/capture/secrets.ts';
import { recordOf } from './support/audit.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

// Shaped like real keys (base64url after the prefix), each distinct so a leak names its source.
const PROJECT_KEY = 'sk-proj-Redact1PathKeyAbcdEfgh_ijklMNOP-0123';
const BODY_KEY = 'sk-svcacct-Redact2BodyKeyQrstUvwx_yzAB-4567';
const OUTPUT_KEY = 'sk-admin-Redact3OutputKeyCdefGhij_klMN-8901';
const LEGACY_KEY = 'sk-Redact4LegacyT3BlbkFJabcdefghijKLMNOPQRST';
const QUERY_SECRET = 'q-secret-value-1357';
const HEADER_SECRET = 'h-secret-value-2468';
const UPSTREAM_SECRET = 'u-secret-value-3579';
const MEMBER_SECRET = 'm-secret-value-4680';

let upstream: Upstream;
let proxy: TestProxy;
let dir: string;

before(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'redaction-'));
  proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: dir, AUDIT_MAX_BODY_BYTES: '4096' });
});

after(async () => {
  await proxy.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

function journalText(): string {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ndjson'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('');
}

async function send(
  path: string,
  options: { method?: string; body?: string | FormData; headers?: Record<string, string> } = {},
): Promise<{ id: string; status: number; text: string }> {
  const res = await request(`${proxy.url}${path}`, {
    method: options.method ?? (options.body === undefined ? 'GET' : 'POST'),
    body: options.body,
    headers: { authorization: 'Bearer sk-redaction-test-key', ...options.headers },
  });
  return { id: String(res.headers['x-proxy-request-id']), status: res.statusCode, text: await res.body.text() };
}

describe('the name rule', () => {
  // Every name the issue found stored, and the credential names of common APIs.
  const secret = [
    'x-api-key', 'access-token', 'client_secret', 'password', 'secret', 'auth', 'authorization', 'openai_api_key',
    'x-goog-api-key', 'api-key', 'api_key', 'apiKey', 'APIKEY', 'key', 'token', 'access_token', 'id_token', 'refresh_token',
    'sig', 'signature', 'x-goog-signature', 'X-Amz-Signature', 'X-Amz-Credential', 'X-Amz-Security-Token', 'AWSAccessKeyId',
    'awsaccesskeyid', 'xapikey', 'accessToken', 'clientSecret', 'ocp-apim-subscription-key', 'passwd', 'pwd', 'passphrase',
    'db.password', 'credentials', 'cookie', 'set-cookie', 'proxy-authorization', 'x-auth-token', 'x-csrf-token', 'api_key2',
    'tokenStore', 'private_key', 'secret_key', 'jwt', 'session_token',
  ];
  // Counts, limits and identifiers that only look alike.
  const notSecret = [
    'x-ratelimit-remaining-tokens', 'x-ratelimit-limit-tokens', 'x-ratelimit-reset-tokens', 'x-ratelimit-remaining-requests',
    'openai-processing-ms', 'max_tokens', 'max_completion_tokens', 'max_output_tokens', 'maxTokens', 'prompt_tokens',
    'input_tokens_details', 'total_tokens', 'idempotency-key', 'Idempotency-Key', 'prompt_cache_key', 'monkey', 'keyword',
    'hotkey', 'author', 'oauth', 'www-authenticate', 'proxy-authenticate', 'design', 'signed', 'X-Amz-SignedHeaders',
    'x-stainless-retry-count', 'openai-organization', 'openai-project', 'x-request-id', 'content-type', 'user-agent',
    'sec-websocket-protocol', 'model', 'limit', 'tokenizer', 'session_id', 'access-control-allow-credentials',
  ];
  for (const name of secret) test(`${name} is a credential`, () => assert.equal(isSecretName(name), true));
  for (const name of notSecret) test(`${name} is not`, () => assert.equal(isSecretName(name), false));

  test('bodies, as units: escaped names, `__proto__`, duplicate members, a value cut by the cap, too deep to walk (redacted as text)', () => {
    const json = (text: string): CapturedBody => ({
      contentType: 'application/json', bytes: text.length, body: JSON.parse(text) as unknown, bodyEncoding: 'json', truncated: false, sha256: '', [JSON_TEXT]: Buffer.from(text),
    });
    const escaped = redactBody(json('{"api\\u005fkey":"v","__proto__":{"password":"p"},"n":1}'));
    assert.deepEqual(JSON.parse(JSON.stringify(escaped.body)), { api_key: '[redacted]', ['__proto__']: { password: '[redacted]' }, n: 1 });
    assert.equal(Object.getPrototypeOf(escaped.body), Object.prototype);
    assert.equal(escaped[JSON_TEXT], undefined, 'the line is written from the redacted value');
    const duplicate = redactBody(json('{"api_key":"hidden-by-duplicate","api_key":""}'));
    assert.equal(duplicate[JSON_TEXT], undefined, 'the text of a body with a credential member is never written as captured');
    const plain = json('{"model":"m","max_tokens":5,"usage":{"prompt_tokens":1}}');
    assert.equal(redactBody(plain), plain, 'nothing found: the same body, its text kept');
    const deep = redactBody(json(`{"password":"p","a":${'{"a":'.repeat(150)}"${PROJECT_KEY}"${'}'.repeat(150)}}`));
    assert.deepEqual([deep.body, deep.bodyEncoding], [`{"password":"[redacted]","a":${'{"a":'.repeat(150)}"sk-[redacted]"${'}'.repeat(150)}}`, 'text']);
    assert.equal(deep[JSON_TEXT], undefined);
    const text = (body: string): unknown => redactBody({ ...json('null'), body, bodyEncoding: 'text' }).body;
    assert.equal(text('{"a":"x","secret" : "s","password": "p\\"q","token":"t","logprob":-1,"api_key":"cut her'), '{"a":"x","secret" : "[redacted]","password": "[redacted]","token":"t","logprob":-1,"api_key":"[redacted]');
  });

  test('headers: a credential keeps its name with [redacted], usage headers stay', () => {
    const redactor = new HeaderRedactor([]);
    const raw = [
      'X-Api-Key', HEADER_SECRET, 'x-goog-api-key', HEADER_SECRET, 'x-ratelimit-remaining-tokens', '9000',
      'openai-processing-ms', '12', 'idempotency-key', 'idem-1', 'x-note', `key ${PROJECT_KEY}`,
    ];
    assert.deepEqual(redactor.redactRaw(raw), {
      'x-api-key': '[redacted]',
      'x-goog-api-key': '[redacted]',
      'x-ratelimit-remaining-tokens': '9000',
      'openai-processing-ms': '12',
      'idempotency-key': 'idem-1',
      'x-note': 'key sk-[redacted]',
    });
  });

  test('queries: by name, the name percent-decoded; keys in any value masked', () => {
    assert.equal(redactQuery('max_tokens=5&x%2Dapi%2Dkey=v&apiKey=v&limit=2'), 'max_tokens=5&x%2Dapi%2Dkey=[redacted]&apiKey=[redacted]&limit=2');
    assert.equal(redactQuery(`q=${PROJECT_KEY}&p=Bearer%20${BODY_KEY}`), 'q=sk-[redacted]&p=Bearer%20sk-[redacted]');
  });
});

describe('the key shape', () => {
  const masked = [PROJECT_KEY, BODY_KEY, OUTPUT_KEY, LEGACY_KEY, 'sk-0123456789abcdef0123456789abcdef'];
  const kept = [
    'sk-short1234', 'sk-learn-for-beginners-and-experts', 'task-AbCdEfGhIjKlMnOpQrStUvWx0123', 'risk-Assessment-For-Q3-2024-Report',
    'sk-proj-********************abcd', 'desk-0123456789ABCDEFGHIJ',
  ];
  test('a Realtime ephemeral client secret (ek_) is masked too', () => {
    const session = JSON.stringify({ id: 'sess_1', client_secret: { value: 'ek_68af296e8e408191a1120ab6383263c2', expires_at: 1 } });
    const body: CapturedBody = {
      contentType: 'application/json', bytes: session.length, body: JSON.parse(session) as unknown, bodyEncoding: 'json', truncated: false, sha256: '',
    };
    assert.deepEqual(redactBody(body).body, { id: 'sess_1', client_secret: { value: 'ek_[redacted]', expires_at: 1 } });
    assert.equal(maskKeys('ek_short'), 'ek_short');
  });
  for (const key of masked) test(`${key.slice(0, 12)}… is masked in text`, () => assert.equal(maskKeys(`use ${key}, then`), 'use sk-[redacted], then'));
  for (const text of kept) test(`${text} is ordinary text`, () => assert.equal(maskKeys(`a ${text} b`), `a ${text} b`));
});

describe('query parameters (issue: x-api-key, access-token, client_secret, password, secret, auth, authorization, openai_api_key)', () => {
  const names = ['x-api-key', 'access-token', 'client_secret', 'password', 'secret', 'auth', 'authorization', 'openai_api_key'];
  for (const name of names) {
    test(`?${name}= is redacted in the record and still forwarded`, async () => {
      const query = `${name}=${QUERY_SECRET}&limit=2&max_tokens=5`;
      const { id } = await send(`/v1/models?${query}`);
      const record = await recordOf(proxy, id);
      assert.equal(record.request.query, `${name}=[redacted]&limit=2&max_tokens=5`);
      assert.equal(upstream.requests.at(-1)?.url, `/v1/models?${query}`);
    });
  }
});

describe('headers (issue: x-api-key, x-goog-api-key, in requests and upstream responses)', () => {
  test('request and response credentials keep their name with [redacted]; rate-limit and timing headers stay', async () => {
    const { id } = await send('/v1/models', {
      headers: {
        'x-api-key': HEADER_SECRET,
        'x-goog-api-key': HEADER_SECRET,
        'x-test-response-header': `x-goog-api-key=${UPSTREAM_SECRET}`,
        'x-ratelimit-remaining-tokens': '100',
      },
    });
    const record = await recordOf(proxy, id);
    assert.equal(record.request.headers['x-api-key'], '[redacted]');
    assert.equal(record.request.headers['x-goog-api-key'], '[redacted]');
    assert.equal(record.request.headers['x-ratelimit-remaining-tokens'], '100');
    assert.equal(record.response.headers['x-goog-api-key'], '[redacted]');
    assert.match(String(record.response.headers['openai-processing-ms']), /^\d+$/);
    assert.equal(record.response.headers['x-ratelimit-remaining-requests'], '9999');
    assert.equal(upstream.requests.at(-1)?.headers['x-api-key'], HEADER_SECRET, 'forwarded as sent');
  });

  test('x-api-key from upstream is redacted too', async () => {
    const { id } = await send('/v1/models', { headers: { 'x-test-response-header': `X-Api-Key=${UPSTREAM_SECRET}` } });
    const record = await recordOf(proxy, id);
    assert.equal(record.response.headers['x-api-key'], '[redacted]');
  });
});

describe('JSON bodies (issue: a JSON body\'s api_key)', () => {
  test('credential members are [redacted] in the stored body and the journal line, never in what is forwarded', async () => {
    const body = {
      model: 'gpt-4o-mini',
      max_tokens: 5,
      messages: [{ role: 'user', content: `my key is ${BODY_KEY}` }],
      api_key: MEMBER_SECRET,
      metadata: { apiKey: MEMBER_SECRET, client_secret: MEMBER_SECRET, password: MEMBER_SECRET, token: MEMBER_SECRET, note: 'kept' },
      prompt_cache_key: 'cache-1',
    };
    const text = JSON.stringify(body);
    const { id, status } = await send('/v1/chat/completions', { body: text, headers: { 'content-type': 'application/json' } });
    assert.equal(status, 200);
    assert.equal(upstream.requests.at(-1)?.body.toString(), text, 'forwarded byte for byte');
    const record = await recordOf(proxy, id);
    assert.equal(record.request.bodyEncoding, 'json');
    assert.deepEqual(record.request.body, {
      ...body,
      messages: [{ role: 'user', content: 'my key is sk-[redacted]' }],
      api_key: '[redacted]',
      metadata: { apiKey: '[redacted]', client_secret: '[redacted]', password: '[redacted]', token: '[redacted]', note: 'kept' },
    });
    assert.equal(record.openai?.requestModel, 'gpt-4o-mini');
    const journal = journalText();
    assert.ok(!journal.includes(MEMBER_SECRET), 'no credential member in the journal');
    assert.ok(!journal.includes(BODY_KEY), 'no key in the journal');
  });

  test('a response body that echoes credentials (here the request headers) is redacted too', async () => {
    const { id, text } = await send('/echo', { headers: { 'x-api-key': HEADER_SECRET } });
    assert.ok(text.includes(HEADER_SECRET), 'the client gets the body as upstream sent it');
    const record = await recordOf(proxy, id);
    const echoed = record.response.body as { headers: Record<string, string> };
    assert.equal(echoed.headers['x-api-key'], '[redacted]');
    assert.equal(echoed.headers.authorization, '[redacted]');
  });

  test('a JSON body cut at the cap is stored as text, its credential members still redacted', async () => {
    const body = JSON.stringify({ model: 'gpt-4o-mini', api_key: MEMBER_SECRET, key: BODY_KEY, messages: [{ role: 'user', content: 'x'.repeat(8000) }] });
    const { id } = await send('/v1/chat/completions', { body, headers: { 'content-type': 'application/json' } });
    const record = await recordOf(proxy, id);
    assert.equal(record.request.bodyEncoding, 'text');
    assert.equal(record.request.truncated, true);
    assert.ok(String(record.request.body).startsWith('{"model":"gpt-4o-mini","api_key":"[redacted]","key":"[redacted]","messages"'));
  });

  test('logprobs entries keep their `token` (generated text, not a credential)', async () => {
    const body = JSON.stringify({ content: [{ token: 'Hello', logprob: -0.1, bytes: [72], top_logprobs: [] }], token: MEMBER_SECRET });
    const { id } = await send('/echo/logprobs', { body, headers: { 'content-type': 'application/json' } });
    const record = await recordOf(proxy, id);
    assert.deepEqual(record.request.body, { content: [{ token: 'Hello', logprob: -0.1, bytes: [72], top_logprobs: [] }], token: '[redacted]' });
  });
});

describe('OpenAI-shaped keys (issue: a key in the URL path; bodies, output text)', () => {
  test('a key in the path is masked in the record and forwarded as sent', async () => {
    const { id } = await send(`/echo/${PROJECT_KEY}/files?after=${LEGACY_KEY}`);
    assert.equal(upstream.requests.at(-1)?.url, `/echo/${PROJECT_KEY}/files?after=${LEGACY_KEY}`);
    const record = await recordOf(proxy, id);
    assert.equal(record.request.path, '/echo/sk-[redacted]/files');
    assert.equal(record.request.query, 'after=sk-[redacted]');
  });

  test('in a text body and in multipart text fields; a field named for a credential is redacted', async () => {
    const text = await send('/echo/text', { body: `export OPENAI_API_KEY=${PROJECT_KEY}\n`, headers: { 'content-type': 'text/plain' } });
    const textRecord = await recordOf(proxy, text.id);
    assert.equal(textRecord.request.body, 'export OPENAI_API_KEY=sk-[redacted]\n');

    const form = new FormData();
    form.append('model', 'whisper-1');
    form.append('prompt', `say ${BODY_KEY}`);
    form.append('api_key', MEMBER_SECRET);
    form.append('file', new Blob([Buffer.from('RIFF....WAVE')], { type: 'audio/wav' }), 'talk.wav');
    const upload = await send('/v1/audio/transcriptions', { body: form });
    const record = await recordOf(proxy, upload.id);
    assert.equal(record.request.bodyEncoding, 'multipart');
    const parts = record.request.body as { name: string; value?: string }[];
    assert.deepEqual(parts.filter((p) => p.value !== undefined), [
      { name: 'model', value: 'whisper-1' },
      { name: 'prompt', value: 'say sk-[redacted]' },
      { name: 'api_key', value: '[redacted]' },
    ]);
    assert.equal(record.openai?.requestModel, 'whisper-1');
  });

  for (const stream of [false, true]) {
    test(`in the output text and the response body (${stream ? 'streamed' : 'JSON'})`, async () => {
      const { id, text } = await send('/v1/chat/completions', {
        body: JSON.stringify({ model: 'gpt-4o-mini', stream, messages: [] }),
        headers: { 'content-type': 'application/json', 'x-test-text': `Your key: ${OUTPUT_KEY}` },
      });
      assert.ok(text.includes(OUTPUT_KEY), 'the client gets the text as upstream sent it');
      const record = await recordOf(proxy, id);
      assert.equal(record.openai?.outputText, 'Your key: sk-[redacted]');
      assert.ok(!JSON.stringify(record.response.body).includes(OUTPUT_KEY));
      assert.ok(!journalText().includes(OUTPUT_KEY));
    });
  }
});

describe('API keys as credentials', () => {
  test('the Realtime subprotocol in another case is fingerprinted and redacted', async () => {
    const key = 'sk-browser-MixedCaseRealtime-5555';
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime', `OpenAI-Insecure-API-Key.${key}`]);
    // The emulator only takes the lower-case prefix and refuses the upgrade (401): the record is
    // what is tested, and it is made of a refused upgrade as of a session.
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, IncomingMessage];
    const id = String(res.headers['x-proxy-request-id']);
    res.resume();
    ws.on('error', () => {}); // "closed before the connection was established": expected here
    ws.terminate();
    assert.equal(res.statusCode, 401);
    const record = await recordOf(proxy, id);
    assert.equal(record.apiKey?.fingerprint, fingerprint(key));
    assert.equal(record.request.headers['sec-websocket-protocol'], 'realtime,OpenAI-Insecure-API-Key.[redacted]');
    assert.ok(!journalText().includes(key));
  });

  test('the whole bearer credential is fingerprinted: `Bearer My API Key` over `My API Key`', async () => {
    const { id } = await send('/v1/models', { headers: { authorization: 'Bearer My API Key' } });
    const record = await recordOf(proxy, id);
    assert.equal(record.apiKey?.fingerprint, fingerprint('My API Key'));
    assert.notEqual(record.apiKey?.fingerprint, fingerprint('My'));
    assert.equal(record.apiKey?.hint, '… Key');
  });

  test('an sk- key without spaces keeps the fingerprint it always had', async () => {
    const { id } = await send('/v1/models', { headers: { authorization: `Bearer ${PROJECT_KEY}` } });
    const record = await recordOf(proxy, id);
    assert.deepEqual(record.apiKey, { fingerprint: fingerprint(PROJECT_KEY), hint: `sk-…${PROJECT_KEY.slice(-4)}` });
  });
});

describe('what else a record carries', () => {
  // Driven through the capture observer's taps with the recorder consuming its facts, a plain object for the request (as recorder.test.ts).
  test("the proxy's error message and a WebSocket close reason have keys masked", async () => {
    const records: AuditRecord[] = [];
    const recorder = recordingObserver({
      batchMs: 0,
      sinks: [(record) => records.push(record)],
      onFailure: (err) => assert.fail(String(err)),
    });
    const req = { method: 'GET', url: '/v1/realtime', headers: {}, rawHeaders: [], socket: { remoteAddress: '127.0.0.1' } } as unknown as IncomingMessage;
    const exchange = newExchange(req, 'websocket') as WebSocketExchange;
    const tap = recorder.start(exchange);
    exchange.error = new MalformedRequestError(`cannot open the upstream WebSocket: bad protocol ${PROJECT_KEY}`);
    exchange.close = { code: 1000, reason: `bye ${BODY_KEY}`, by: 'client' };
    exchange.endHr = performance.now();
    tap.end?.();
    await recorder.close();
    assert.equal(records[0]?.error?.message, 'cannot open the upstream WebSocket: bad protocol sk-[redacted]');
    assert.equal(records[0]?.websocket?.closeReason, 'bye sk-[redacted]');
  });
});
