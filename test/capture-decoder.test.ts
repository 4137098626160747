// Tests for ContentDecoder: identity pass-through, zlib decoding in any chunking, and bad input.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { ContentDecoder } from '../src/capture/decoder.ts';
import { OpenAIStreamAccumulator } from '../src/capture/openai-stream.ts';
import { SseParser } from '../src/capture/sse.ts';

async function decode(wire: Buffer, encoding: string | null, chunkSize: number): Promise<{ out: Buffer; decoder: ContentDecoder }> {
  const pieces: Buffer[] = [];
  const decoder = new ContentDecoder(encoding, (chunk) => pieces.push(chunk));
  for (let i = 0; i < wire.length; i += chunkSize) decoder.push(wire.subarray(i, i + chunkSize));
  await decoder.end();
  return { out: Buffer.concat(pieces), decoder };
}

test('identity content is handed over synchronously, as the same chunk', () => {
  const seen: Buffer[] = [];
  const decoder = new ContentDecoder('identity', (chunk) => seen.push(chunk));
  const chunk = Buffer.from('abc');
  decoder.push(chunk);
  assert.equal(seen[0], chunk);
  assert.equal(decoder.decoding, false);
});

test('gzip, deflate and br decode whole, in any chunking', async () => {
  const content = Buffer.from(randomBytes(3_000).toString('base64').repeat(20));
  const encoders: [string, (data: Buffer) => Buffer][] = [
    ['gzip', gzipSync],
    ['deflate', deflateSync],
    ['BR', brotliCompressSync],
  ];
  for (const [encoding, encode] of encoders) {
    for (const chunkSize of [1, 333, 65536]) {
      const { out, decoder } = await decode(encode(content), encoding, chunkSize);
      assert.ok(out.equals(content), `${encoding} in ${chunkSize}-byte chunks`);
      assert.deepEqual([decoder.failed, decoder.cutShort, decoder.decoding], [false, false, true]);
    }
  }
});

test('a gzip-compressed SSE stream still yields its usage', async () => {
  const usage = { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 };
  const stream =
    'data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}],"usage":null}\n\n' +
    `data: {"id":"c1","object":"chat.completion.chunk","model":"m","choices":[],"usage":${JSON.stringify(usage)}}\n\ndata: [DONE]\n\n`;
  const accumulator = new OpenAIStreamAccumulator();
  const sse = new SseParser((event, data) => accumulator.push(event, data));
  const decoder = new ContentDecoder('gzip', (chunk) => sse.push(chunk));
  const wire = gzipSync(stream);
  for (let i = 0; i < wire.length; i += 10) decoder.push(wire.subarray(i, i + 10));
  await decoder.end();
  sse.end();
  assert.equal(accumulator.summary().usage?.totalTokens, 4);
  assert.equal(accumulator.summary().outputText, 'hi');
});

test('unsupported encodings and corrupt data fail without throwing', async () => {
  for (const encoding of ['zstd', 'gzip, br', 'compress']) {
    const { out, decoder } = await decode(gzipSync('x'), encoding, 4);
    assert.deepEqual([out.length, decoder.failed], [0, true], encoding);
  }
  const { decoder } = await decode(Buffer.from('not gzip at all'), 'gzip', 4);
  assert.equal(decoder.failed, true);
});

test('stop() ends the content; maxQueuedBytes abandons decoding when zlib lags', async () => {
  const pieces: Buffer[] = [];
  const stopped = new ContentDecoder('gzip', (chunk) => {
    pieces.push(chunk);
    stopped.stop();
  });
  const wire = gzipSync(Buffer.alloc(1024 * 1024, 'a'));
  for (let i = 0; i < wire.length; i += 100) stopped.push(wire.subarray(i, i + 100));
  await stopped.end();
  assert.equal(pieces.length, 1);

  const lagging = new ContentDecoder('gzip', () => undefined, { maxQueuedBytes: 1000 });
  const noise = gzipSync(randomBytes(100_000));
  for (let i = 0; i < noise.length; i += 500) lagging.push(noise.subarray(i, i + 500));
  await lagging.end();
  assert.deepEqual([lagging.cutShort, lagging.failed], [true, false]);
});
