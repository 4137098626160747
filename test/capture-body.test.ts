// Tests for BodyCapture: encodings, caps, decompression and bad input, with wire bytes hashed as sent.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { recordLine } from '../src/audit/journal/journal-line.ts';
import { JSON_TEXT, type AuditRecord, type CapturedBody } from '../src/audit/record/record.ts';
import { BodyCapture, type BodyCaptureOptions } from '../src/capture/body-capture.ts';
import { MemoryBudget } from '../src/memory-budget.ts';
import { bareRecord } from './support/records.ts';

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function chunksOf(data: Buffer, size: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) chunks.push(data.subarray(i, i + size));
  return chunks;
}

async function capture(data: Buffer, options: Partial<BodyCaptureOptions>, chunkSize = 1000): Promise<BodyCapture> {
  const body = new BodyCapture({ contentType: null, contentEncoding: null, maxBytes: 1024 * 1024, ...options });
  for (const chunk of chunksOf(data, chunkSize)) body.push(chunk);
  await body.finish();
  return body;
}

async function captured(data: Buffer, options: Partial<BodyCaptureOptions>, chunkSize = 1000) {
  return (await capture(data, options, chunkSize)).finish();
}

const MIB = 1024 * 1024;

function pick(body: CapturedBody): [string, unknown, string | undefined] {
  return [body.bodyEncoding, body.body, body.omittedReason];
}

/** A minimal record around a captured request body, to see its journal line. */
function recordWith(request: CapturedBody): AuditRecord {
  return bareRecord('r', request);
}

const REQUEST = { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'Grüße 🌍' }] };
const JSON_BYTES = Buffer.from(JSON.stringify(REQUEST));

test('JSON is stored parsed, with bytes and sha256 of the body, and the text it was parsed from', async () => {
  const result = await captured(JSON_BYTES, { contentType: 'application/json; charset=utf-8' }, 7);
  assert.deepEqual(result, {
    contentType: 'application/json; charset=utf-8',
    bytes: JSON_BYTES.length,
    body: REQUEST,
    bodyEncoding: 'json',
    truncated: false,
    sha256: sha256(JSON_BYTES),
    [JSON_TEXT]: JSON_BYTES,
  });
  const gzipped = await captured(gzipSync(JSON_BYTES), { contentType: 'application/json', contentEncoding: 'gzip' });
  assert.deepEqual(gzipped[JSON_TEXT], JSON_BYTES, 'the decoded text, not the bytes on the wire');
  const text = await captured(Buffer.from('not json'), { contentType: 'application/json' });
  assert.equal(text[JSON_TEXT], undefined);
});

test('+json types are JSON; malformed JSON is stored as text', async () => {
  const problem = Buffer.from('{"type":"about:blank"}');
  assert.equal((await captured(problem, { contentType: 'application/problem+json' })).bodyEncoding, 'json');
  const broken = Buffer.from('{"model": "gpt-4o", ');
  const result = await captured(broken, { contentType: 'application/json' });
  assert.equal(result.bodyEncoding, 'text');
  assert.equal(result.body, '{"model": "gpt-4o", ');
  assert.equal(result.sha256, sha256(broken));
});

test('text types: event streams and JSON lines are text', async () => {
  const sse = Buffer.from('data: {"a":1}\n\ndata: [DONE]\n\n');
  for (const contentType of ['text/event-stream', 'application/x-ndjson', 'application/jsonl', 'text/plain; charset=utf-8']) {
    const result = await captured(sse, { contentType });
    assert.equal(result.bodyEncoding, 'text', contentType);
    assert.equal(result.body, sse.toString());
  }
});

test('over the cap: the first bytes as text, without half a character, truncated', async () => {
  const text = Buffer.from(`${'a'.repeat(9)}€${'b'.repeat(100)}`);
  const result = await captured(text, { contentType: 'text/plain', maxBytes: 10 }, 3);
  assert.equal(result.body, 'a'.repeat(9));
  assert.equal(result.truncated, true);
  assert.equal(result.bytes, text.length);
  assert.equal(result.sha256, sha256(text));

  const json = await captured(JSON_BYTES, { contentType: 'application/json', maxBytes: 20 });
  assert.deepEqual([json.bodyEncoding, json.body, json.truncated], ['text', JSON_BYTES.subarray(0, 20).toString(), true]);
});

test('binary bodies are omitted; truncated says whether they were over the cap', async () => {
  const audio = randomBytes(5000);
  for (const contentType of ['audio/mpeg', 'application/octet-stream', 'image/png', null]) {
    const result = await captured(audio, { contentType, maxBytes: 10_000 });
    assert.deepEqual(result, { contentType, bytes: 5000, body: null, bodyEncoding: 'omitted', truncated: false, sha256: sha256(audio) });
  }
  const over = await captured(audio, { contentType: 'audio/mpeg', maxBytes: 4096 });
  assert.deepEqual([over.body, over.bodyEncoding, over.truncated], [null, 'omitted', true]);
});

test('gzip, deflate and br are decoded for the record; bytes and sha256 stay those of the wire', async () => {
  const encoders: [string, (data: Buffer) => Buffer][] = [
    ['gzip', gzipSync],
    ['x-gzip', gzipSync],
    ['deflate', deflateSync],
    ['br', brotliCompressSync],
  ];
  for (const [encoding, encode] of encoders) {
    const wire = encode(JSON_BYTES);
    for (const chunkSize of [1, 16, 4096]) {
      const result = await captured(wire, { contentType: 'application/json', contentEncoding: encoding }, chunkSize);
      assert.deepEqual(result.body, REQUEST, `${encoding} in ${chunkSize}-byte chunks`);
      assert.equal(result.bytes, wire.length);
      assert.equal(result.sha256, sha256(wire));
      assert.equal(result.truncated, false);
    }
  }
});

test('a compressed body over the cap keeps its first decoded bytes', async () => {
  const text = Buffer.from('data: {"choices":[]}\n\n'.repeat(50_000));
  const wire = gzipSync(text);
  const result = await captured(wire, { contentType: 'text/event-stream', contentEncoding: 'gzip', maxBytes: 4096 }, 512);
  assert.equal(result.truncated, true);
  assert.equal(result.body, text.subarray(0, 4096).toString());
  assert.equal(result.bytes, wire.length);
  assert.equal(result.sha256, sha256(wire));
});

test('a large compressed body pushed faster than zlib drains keeps a bounded prefix', async () => {
  const text = Buffer.from(randomBytes(400_000).toString('hex'));
  const result = await captured(gzipSync(text), { contentType: 'text/plain', contentEncoding: 'gzip', maxBytes: 1024 }, 1024);
  assert.equal(result.truncated, true);
  assert.ok(typeof result.body === 'string' && result.body.length <= 1024);
  assert.ok(text.toString().startsWith(String(result.body)));
});

test('a compressed body cut short keeps what decoded', async () => {
  const wire = gzipSync(Buffer.from('hello world '.repeat(1000)));
  const result = await captured(wire.subarray(0, wire.length - 20), { contentType: 'text/plain', contentEncoding: 'gzip' });
  assert.equal(result.bodyEncoding, 'text');
  assert.match(String(result.body), /^(hello world )+/);
});

test('bad gzip and unknown encodings: omitted, still counted and hashed', async () => {
  const garbage = Buffer.from('this is not gzip at all');
  const bad = await captured(garbage, { contentType: 'application/json', contentEncoding: 'gzip' });
  assert.deepEqual(bad, {
    contentType: 'application/json',
    bytes: garbage.length,
    body: null,
    bodyEncoding: 'omitted',
    truncated: false,
    sha256: sha256(garbage),
  });
  for (const encoding of ['zstd', 'gzip, br']) {
    const result = await captured(gzipSync(JSON_BYTES), { contentType: 'application/json', contentEncoding: encoding });
    assert.equal(result.bodyEncoding, 'omitted', encoding);
  }
});

test('empty bodies are omitted', async () => {
  const result = await captured(Buffer.alloc(0), { contentType: 'application/json' });
  assert.deepEqual([result.bytes, result.body, result.bodyEncoding, result.sha256], [0, null, 'omitted', sha256(Buffer.alloc(0))]);
});

test('fields: top-level members of JSON, found past the cap too', async () => {
  const small = await capture(JSON_BYTES, { contentType: 'application/json', fields: ['model', 'stream', 'absent'] });
  assert.deepEqual(small.fields, { model: 'gpt-4o', stream: true });

  // The official SDKs send `messages` before `model`: a large image request puts `model` past the cap.
  const image = `data:image/png;base64,${randomBytes(3 * 1024 * 1024).toString('base64')}`;
  const large = Buffer.from(JSON.stringify({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: image } }] }], model: 'gpt-4o', stream: true }));
  const capturedLarge = await capture(large, { contentType: 'application/json', maxBytes: 1024, fields: ['model', 'stream'] }, 64 * 1024);
  assert.deepEqual(capturedLarge.fields, { model: 'gpt-4o', stream: true });
  assert.equal((await capturedLarge.finish()).truncated, true);
});

test('multipart: parts, fields from text fields, and a broken body', async () => {
  const boundary = 'xYzZY';
  const file = randomBytes(100_000);
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="stream"\r\n\r\ntrue\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\nContent-Type: audio/mpeg\r\n\r\n`),
    file,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  const contentType = `multipart/form-data; boundary=${boundary}`;
  const capturedBody = await capture(body, { contentType, maxBytes: 1024, fields: ['model', 'stream'] }, 999);
  assert.deepEqual(await capturedBody.finish(), {
    contentType,
    bytes: body.length,
    body: [
      { name: 'model', value: 'whisper-1' },
      { name: 'stream', value: 'true' },
      { name: 'file', filename: 'a.mp3', contentType: 'audio/mpeg', bytes: file.length, sha256: sha256(file) },
    ],
    bodyEncoding: 'multipart',
    truncated: false,
    sha256: sha256(body),
  });
  assert.deepEqual(capturedBody.fields, { model: 'whisper-1', stream: 'true' });

  const cut = await captured(body.subarray(0, 500), { contentType });
  assert.equal(cut.bodyEncoding, 'multipart');
  assert.equal(cut.truncated, true);
  assert.equal(Array.isArray(cut.body) && cut.body.length, 2);

  const broken = await captured(Buffer.from('no multipart here'), { contentType: `multipart/form-data; boundary=${boundary}` });
  assert.deepEqual([broken.bodyEncoding, broken.truncated], ['multipart', true]);
  const noBoundary = await captured(body, { contentType: 'multipart/form-data' });
  assert.deepEqual([noBoundary.bodyEncoding, noBoundary.body, noBoundary.sha256], ['omitted', null, sha256(body)]);
});

test('finish is idempotent and later chunks are ignored', async () => {
  const body = new BodyCapture({ contentType: 'text/plain', contentEncoding: null, maxBytes: 100 });
  body.push(Buffer.from('abc'));
  const first = body.finish();
  body.push(Buffer.from('def'));
  assert.equal(body.finish(), first);
  assert.deepEqual([(await first).body, (await first).bytes], ['abc', 3]);
});

test('text that is not valid UTF-8, or mostly control characters, is omitted with its hash (not a line six times its size)', async () => {
  const controls = Buffer.alloc(MIB, 0x01);
  const result = await captured(controls, { contentType: 'text/plain' });
  assert.deepEqual(
    { ...result },
    { contentType: 'text/plain', bytes: MIB, body: null, bodyEncoding: 'omitted', truncated: false, omittedReason: 'not_text', sha256: sha256(controls) },
  );
  const line = recordLine(recordWith(result)).pieces.join('');
  assert.ok(line.length < 4096, `the record's line is ${line.length} characters`);

  const latin1 = Buffer.from('caf\xe9 cr\xe8me', 'latin1');
  assert.deepEqual(pick(await captured(latin1, { contentType: 'text/plain' })), ['omitted', null, 'not_text']);
  // JSON must be UTF-8 (RFC 8259 §8.1): bytes that only parse once mangled into U+FFFD are not kept.
  const badJson = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
  assert.deepEqual(pick(await captured(badJson, { contentType: 'application/json' })), ['omitted', null, 'not_text']);
  const sse = Buffer.concat([Buffer.from('data: '), Buffer.alloc(64, 0x00), Buffer.from('\n\n')]);
  assert.deepEqual(pick(await captured(sse, { contentType: 'text/event-stream' })), ['omitted', null, 'not_text']);

  // Terminal colours or a stray form feed are text still.
  const coloured = Buffer.from('\x1b[31mred\x1b[0m and plain text around it, with a tab\tand a form feed\f.\n');
  assert.deepEqual(pick(await captured(coloured, { contentType: 'text/plain' })), ['text', coloured.toString(), undefined]);
  // A cap that cuts a character in half does not make the text invalid.
  const accents = Buffer.from('é'.repeat(100));
  const cut = await captured(accents, { contentType: 'text/plain', maxBytes: 51 });
  assert.deepEqual([cut.bodyEncoding, cut.body, cut.truncated], ['text', 'é'.repeat(25), true]);
});

test('past the memory budget a body is not kept: omitted with the reason, fields still found, bytes given back on release', async () => {
  const budget = new MemoryBudget(64 * 1024);
  const memory = budget.account('capture');
  const json = Buffer.from(JSON.stringify({ model: 'gpt-4o', input: 'z'.repeat(100 * 1024), stream: true }));
  const body = await capture(json, { contentType: 'application/json', fields: ['model', 'stream'], memory }, 16 * 1024);
  const result = await body.finish();
  assert.deepEqual(pick(result), ['omitted', null, 'memory_budget']);
  assert.deepEqual([result.bytes, result.sha256], [json.length, sha256(json)]);
  assert.deepEqual(body.fields, { model: 'gpt-4o', stream: true }, 'the model is still known');
  assert.equal(budget.stats.usedBytes, 0, 'nothing held once the body gave up');

  const small = await capture(JSON_BYTES, { contentType: 'application/json', memory });
  assert.equal((await small.finish()).bodyEncoding, 'json');
  assert.equal(budget.stats.usedBytes, JSON_BYTES.length, 'a kept body holds its bytes');
  small.release();
  small.release();
  assert.equal(budget.stats.usedBytes, 0, 'release gives them back, once');
});
