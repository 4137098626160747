// Tests for the incremental multipart/form-data parser: splits anywhere, large files, bad input.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MultipartParser } from '../src/capture/multipart.ts';

const BOUNDARY = '----WebKitFormBoundary7MA4YWxkTrZu0gW';
const CONTENT_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;
const AUDIO = Buffer.from('RIFF\r\n--\r\n-not-a-boundary\r\n--', 'latin1');

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

const BODY = Buffer.concat([
  Buffer.from('preamble to ignore\r\n'),
  Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o-transcribe\r\n`),
  Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nGrüße 🌍\r\nline two\r\n`),
  Buffer.from(`--${BOUNDARY}\r\ncontent-disposition: form-data; name="file"; filename="speech \\"1\\".wav"\r\nContent-Type: audio/wav\r\n\r\n`),
  AUDIO,
  Buffer.from(`\r\n--${BOUNDARY}\r\nContent-Disposition: form-data; name="empty"\r\n\r\n\r\n`),
  Buffer.from(`--${BOUNDARY}--\r\nepilogue`),
]);

const PARTS = [
  { name: 'model', value: 'gpt-4o-transcribe' },
  { name: 'prompt', value: 'Grüße 🌍\r\nline two' },
  { name: 'file', filename: 'speech "1".wav', contentType: 'audio/wav', bytes: AUDIO.length, sha256: sha256(AUDIO) },
  { name: 'empty', value: '' },
];

function parse(chunks: Iterable<Buffer>, contentType = CONTENT_TYPE): MultipartParser {
  const parser = MultipartParser.fromContentType(contentType);
  assert.ok(parser);
  for (const chunk of chunks) parser.push(chunk);
  return parser;
}

test('text fields, a file part, preamble and epilogue', () => {
  const parser = parse([BODY]);
  assert.deepEqual(parser.parts, PARTS);
  assert.equal(parser.complete, true);
  assert.equal(parser.failed, false);
  assert.equal(parser.textField('model'), 'gpt-4o-transcribe');
  assert.equal(parser.textField('file'), null);
});

test('1-byte chunks', () => {
  const parser = parse([...BODY].map((byte) => Buffer.of(byte)));
  assert.deepEqual(parser.parts, PARTS);
  assert.equal(parser.complete, true);
});

test('a split at every byte position', () => {
  for (let at = 0; at <= BODY.length; at++) {
    const parser = parse([BODY.subarray(0, at), BODY.subarray(at)]);
    assert.deepEqual(parser.parts, PARTS, `split at ${at}`);
    assert.equal(parser.complete, true);
  }
});

test('a quoted boundary, a part without headers, and RFC 6266 filename*', () => {
  const body = Buffer.from(
    '--b"q\r\n\r\nno headers\r\n' +
      '--b"q  \r\nContent-Disposition: form-data; name="f"; filename="fallback.txt"; filename*=UTF-8\'\'%E2%82%AC%20rates.txt\r\n\r\nx\r\n' +
      '--b"q--',
  );
  const parser = parse([body], 'multipart/form-data; boundary="b\\"q"');
  assert.deepEqual(parser.parts, [
    { name: '', value: 'no headers' },
    { name: 'f', filename: '€ rates.txt', contentType: null, bytes: 1, sha256: sha256(Buffer.from('x')) },
  ]);
});

test('a 20 MiB file in 64 KiB chunks is hashed, not kept', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const parser = parse([Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n`)]);
  const hash = createHash('sha256');
  const chunkSize = 64 * 1024;
  const memory: WeakRef<ArrayBufferLike>[] = [];
  for (let i = 0; i < 320; i++) {
    // Every chunk ends in CR, LF or a dash so the parser must look for a split delimiter.
    const chunk = Buffer.alloc(chunkSize, i % 251);
    chunk[chunkSize - 1] = [0x0d, 0x0a, 0x2d][i % 3] ?? 0;
    hash.update(chunk);
    parser.push(chunk);
    memory.push(new WeakRef(chunk.buffer));
  }
  // WeakRefs made in this job stay alive until it ends.
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  const retained = memory.filter((ref) => ref.deref() !== undefined).length;
  parser.push(Buffer.from(`\r\n--${BOUNDARY}--\r\n`));
  assert.deepEqual(parser.parts, [
    { name: 'file', filename: 'big.bin', contentType: null, bytes: 20 * 1024 * 1024, sha256: hash.digest('hex') },
  ]);
  // At most the last chunk, whose tail may begin a delimiter.
  assert.ok(retained <= 1, `${retained} chunks retained`);
});

test('text values are capped at the limit without splitting a character', () => {
  const parser = MultipartParser.fromContentType(CONTENT_TYPE, { maxValueBytes: 10 });
  assert.ok(parser);
  parser.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="prompt"\r\n\r\n123456789€€\r\n--${BOUNDARY}--`));
  assert.deepEqual(parser.parts, [{ name: 'prompt', value: '123456789', truncated: true }]);
});

test('all text values together are capped, each keeping its first 256 bytes so a later `model` survives', () => {
  const parser = MultipartParser.fromContentType(CONTENT_TYPE, { maxTotalValueBytes: 12_000 });
  assert.ok(parser);
  const field = (name: string, value: string): string => `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  parser.push(Buffer.from(`${field('a', 'a'.repeat(10_000))}${field('b', 'b'.repeat(10_000))}${field('c', 'c'.repeat(10_000))}${field('model', 'whisper-1')}--${BOUNDARY}--`));
  assert.deepEqual(parser.parts, [
    { name: 'a', value: 'a'.repeat(10_000) },
    { name: 'b', value: 'b'.repeat(2_000), truncated: true },
    { name: 'c', value: 'c'.repeat(256), truncated: true },
    { name: 'model', value: 'whisper-1' },
  ]);
  assert.equal(parser.textField('model'), 'whisper-1');
});

test('parts past maxParts are counted as dropped', () => {
  const parser = MultipartParser.fromContentType(CONTENT_TYPE, { maxParts: 2 });
  assert.ok(parser);
  parser.push(BODY);
  assert.deepEqual(parser.parts, PARTS.slice(0, 2));
  assert.equal(parser.partsDropped, true);
  assert.equal(parser.complete, true);
});

test('broken input: no boundary, no closing delimiter, garbage after a boundary, endless headers', () => {
  assert.equal(MultipartParser.fromContentType('multipart/form-data'), null);
  assert.equal(MultipartParser.fromContentType(null), null);

  const cut = parse([BODY.subarray(0, BODY.length - 40)]);
  assert.equal(cut.complete, false);
  assert.deepEqual(cut.parts, PARTS.slice(0, 3));

  const garbage = parse([Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--${BOUNDARY}xx`)]);
  assert.equal(garbage.failed, true);
  assert.deepEqual(garbage.parts, [{ name: 'a', value: '1' }]);

  const headers = parse([Buffer.from(`--${BOUNDARY}\r\nX-Long: ${'a'.repeat(20_000)}`)]);
  assert.equal(headers.failed, true);
  headers.push(Buffer.from('more'));
  assert.deepEqual(headers.parts, []);
});
