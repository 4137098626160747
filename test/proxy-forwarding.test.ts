/** End to end through the proxy: the official SDK for every API family, raw HTTP for byte-level checks. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import OpenAI, { toFile } from 'openai';
import { request } from 'undici';
import { EMULATOR_TEXT, EMULATOR_USAGE, startUpstream, type Upstream } from './support/upstream.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';

let upstream: Upstream;
let proxy: TestProxy;
let client: OpenAI;

before(async () => {
  upstream = await startUpstream();
  proxy = await startTestProxy({ UPSTREAM_URL: upstream.url });
  client = new OpenAI({ apiKey: 'sk-test-forwarding-1234', baseURL: `${proxy.url}/v1`, maxRetries: 0 });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

function lastRequest(): (typeof upstream.requests)[number] {
  const last = upstream.requests.at(-1);
  assert.ok(last, 'upstream received a request');
  return last;
}

describe('the official SDK through the proxy', () => {
  test('chat completion', async () => {
    const completion = await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(completion.choices[0]?.message.content, EMULATOR_TEXT);
    assert.equal(completion.usage?.prompt_tokens, EMULATOR_USAGE.prompt);
    assert.equal(lastRequest().headers.authorization, 'Bearer sk-test-forwarding-1234');
  });

  test('streamed chat completion with usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, EMULATOR_TEXT);
    assert.equal(usage?.completion_tokens, EMULATOR_USAGE.completion);
  });

  test('streamed Responses API call', async () => {
    const stream = await client.responses.create({ model: 'gpt-4.1', input: 'hi', stream: true });
    let text = '';
    let completed = false;
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed') completed = true;
    }
    assert.equal(text, EMULATOR_TEXT);
    assert.ok(completed);
  });

  test('legacy completions and embeddings', async () => {
    const completion = await client.completions.create({ model: 'gpt-3.5-turbo-instruct', prompt: 'hi' });
    assert.equal(completion.object, 'text_completion');
    const embeddings = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    assert.equal(embeddings.data.length, 2);
    assert.equal(embeddings.data[0]?.embedding.length, 8);
  });

  test('audio: multipart upload in, binary out', async () => {
    const audio = Buffer.alloc(300_000, 7);
    const transcription = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(audio, 'a.wav') });
    assert.equal(transcription.text, `transcribed ${audio.length} bytes`);
    assert.equal(lastRequest().body.includes(audio), true, 'the file bytes reached upstream unchanged');

    const speech = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'hello' });
    const bytes = Buffer.from(await speech.arrayBuffer());
    assert.equal(bytes.length, 64 * 1024);
    assert.equal(speech.headers.get('content-type'), 'audio/mpeg');
  });

  test('files, images, batches, models', async () => {
    const file = await client.files.create({ file: await toFile(Buffer.from('{"a":1}\n'), 'batch.jsonl'), purpose: 'batch' });
    assert.equal(file.object, 'file');
    const content = await client.files.content(file.id);
    assert.ok((await content.arrayBuffer()).byteLength > 0);
    const image = await client.images.generate({ model: 'gpt-image-1', prompt: 'a cat' });
    assert.ok(image.data?.[0]?.b64_json);
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: '/v1/chat/completions', completion_window: '24h' });
    assert.equal((await client.batches.retrieve(batch.id)).id, batch.id);
    const models = await client.models.list();
    assert.ok(models.data.length > 0);
  });

  test('an upstream error reaches the SDK as the same error class, with its request id', async () => {
    const err = await client.chat.completions
      .create({ model: 'x', messages: [] }, { headers: { 'x-test-status': '429' } })
      .catch((e: unknown) => e);
    assert.ok(err instanceof OpenAI.RateLimitError);
    assert.match(err.requestID ?? '', /^req_/);
  });
});

describe('byte-level transparency', () => {
  test('every method, path and query string reaches upstream byte for byte', async () => {
    const query = '?a=1&b=%20x&a=2&empty=&utf=%C3%A9&raw=a+b';
    for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const) {
      const body = method === 'GET' || method === 'OPTIONS' ? undefined : `{"m":"${method}"}`;
      const res = await request(`${proxy.url}/echo/some/Path.v1${query}`, { method, body });
      const echo = (await res.body.json()) as { method: string; url: string; bodyBytes: number };
      assert.equal(echo.method, method);
      assert.equal(echo.url, `/echo/some/Path.v1${query}`);
      assert.equal(echo.bodyBytes, body === undefined ? 0 : Buffer.byteLength(body));
    }
    const head = await request(`${proxy.url}/echo${query}`, { method: 'HEAD' });
    assert.equal(head.statusCode, 200);
    assert.equal(lastRequest().method, 'HEAD');
    await head.body.dump();
  });

  test('a malformed JSON body is forwarded as is', async () => {
    const body = '{"model": "gpt-4o", "messages": [ oops';
    const res = await request(`${proxy.url}/echo`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    const echo = (await res.body.json()) as { bodySha256: string };
    assert.equal(echo.bodySha256, createHash('sha256').update(body).digest('hex'));
  });

  test('client headers pass through, hop-by-hop ones and Host do not', async () => {
    const res = await rawRequest(proxy.url, '/echo', [
      ['Authorization', 'Bearer sk-abc'],
      ['OpenAI-Organization', 'org-1'],
      ['OpenAI-Project', 'proj-1'],
      ['OpenAI-Beta', 'assistants=v2'],
      ['Idempotency-Key', 'k-1'],
      ['X-Custom', 'one'],
      ['X-Custom', 'two'],
      ['Connection', 'keep-alive, X-Secret-Hop'],
      ['X-Secret-Hop', 'must-not-pass'],
      ['Keep-Alive', 'timeout=5'],
      ['Proxy-Authorization', 'Basic abc'],
      ['TE', 'trailers'],
      ['Host', 'evil.example'],
    ]);
    const echo = JSON.parse(res.body) as { headers: Record<string, string>; rawHeaders: string[] };
    assert.equal(echo.headers.authorization, 'Bearer sk-abc');
    assert.equal(echo.headers['openai-organization'], 'org-1');
    assert.equal(echo.headers['openai-project'], 'proj-1');
    assert.equal(echo.headers['openai-beta'], 'assistants=v2');
    assert.equal(echo.headers['idempotency-key'], 'k-1');
    assert.deepEqual(pairs(echo.rawHeaders, 'x-custom'), ['one', 'two']);
    for (const gone of ['x-secret-hop', 'keep-alive', 'proxy-authorization', 'te', 'x-forwarded-for', 'x-forwarded-proto']) {
      assert.equal(echo.headers[gone], undefined, `${gone} must not be forwarded`);
    }
    assert.equal(echo.headers.host, new URL(upstream.url).host);
  });

  test('response headers come back, with x-proxy-request-id added', async () => {
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-response-header': 'set-cookie=a=1' },
    });
    await res.body.dump();
    assert.match(String(res.headers['x-request-id']), /^req_/);
    assert.ok(res.headers['openai-processing-ms']);
    assert.ok(res.headers['x-ratelimit-remaining-requests']);
    assert.equal(res.headers['openai-version'], '2020-10-01');
    assert.equal(res.headers['set-cookie'], 'a=1');
    assert.match(String(res.headers['x-proxy-request-id']), /^[0-9a-f-]{36}$/);
  });

  test("the proxy's x-proxy-request-id replaces one from upstream (a proxy further along), once", async () => {
    const res = await request(`${proxy.url}/v1/models`, { headers: { 'x-test-response-header': 'x-proxy-request-id=inner' } });
    await res.body.dump();
    assert.match(String(res.headers['x-proxy-request-id']), /^[0-9a-f-]{36}$/);
  });

  test('a compressed response is forwarded compressed, untouched', async () => {
    const direct = await request(`${upstream.url}/v1/models`, { headers: { 'accept-encoding': 'gzip' } });
    const directBytes = Buffer.from(await direct.body.arrayBuffer());
    const proxied = await request(`${proxy.url}/v1/models`, { headers: { 'accept-encoding': 'gzip' } });
    const proxiedBytes = Buffer.from(await proxied.body.arrayBuffer());
    assert.equal(proxied.headers['content-encoding'], 'gzip');
    assert.deepEqual(gunzipSync(proxiedBytes), gunzipSync(directBytes));
    assert.equal(proxied.headers['content-length'], String(proxiedBytes.length));
  });

  test('an absolute-URI target or a forged Host never redirects the proxy', async () => {
    const before = upstream.requests.length;
    const res = await rawRequest(proxy.url, 'http://169.254.169.254/echo/meta?x=1', [['Host', '169.254.169.254']]);
    assert.equal(res.status, 200);
    assert.equal(upstream.requests.length, before + 1);
    assert.equal(lastRequest().url, '/echo/meta?x=1');
    const star = await rawRequest(proxy.url, '*', [], 'OPTIONS');
    assert.equal(star.status, 400);
    assert.equal((JSON.parse(star.body) as { error: { code: string } }).error.code, 'invalid_request_target');
  });
});

describe('configuration-driven forwarding', () => {
  test('FORWARDED_HEADERS=true adds X-Forwarded-For and -Proto', async () => {
    const p = await startTestProxy({ UPSTREAM_URL: upstream.url, FORWARDED_HEADERS: 'true' });
    try {
      const res = await rawRequest(p.url, '/echo', [['X-Forwarded-For', '10.1.2.3']]);
      const echo = JSON.parse(res.body) as { headers: Record<string, string> };
      assert.equal(echo.headers['x-forwarded-for'], '10.1.2.3, 127.0.0.1');
      assert.equal(echo.headers['x-forwarded-proto'], 'http');
    } finally {
      await p.close();
    }
  });

  test('UPSTREAM_ROUTES sends a prefix to another origin, longest prefix first', async () => {
    const other = await startUpstream();
    const p = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      UPSTREAM_ROUTES: JSON.stringify({ '/backend-api/': other.url, '/backend-api/special/': upstream.url }),
    });
    try {
      await (await request(`${p.url}/backend-api/echo?q=1`)).body.dump();
      assert.equal(other.requests.at(-1)?.url, '/backend-api/echo?q=1');
      const before = other.requests.length;
      await (await request(`${p.url}/backend-api/special/x`)).body.dump();
      assert.equal(other.requests.length, before);
      assert.equal(lastRequest().url, '/backend-api/special/x');
    } finally {
      await p.close();
      await other.close();
    }
  });

  test('UPSTREAM_URL with a base path prefixes every request path', async () => {
    const p = await startTestProxy({ UPSTREAM_URL: `${upstream.url}/echo/base` });
    try {
      const echo = (await (await request(`${p.url}/v1/models?x=1`)).body.json()) as { url: string };
      assert.equal(echo.url, '/echo/base/v1/models?x=1');
    } finally {
      await p.close();
    }
  });
});

function pairs(raw: string[], name: string): string[] {
  const values: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) values.push(raw[i + 1] ?? '');
  return values;
}

/** A request with exactly these header lines (node:http's client would add or merge some). */
function rawRequest(
  base: string,
  target: string,
  headers: Array<[string, string]>,
  method = 'GET',
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  const url = new URL(base);
  const lines = headers.some(([name]) => name.toLowerCase() === 'host') ? headers : [['Host', url.host], ...headers];
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path: target, setHost: false, headers: lines.flat() });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}
