// Tests for STREAM_USAGE=inject: the request rewrite and the byte-level usage chunk stripper.
import assert from 'node:assert/strict';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { injectIncludeUsage, UsageChunkStripper } from '../src/capture/stream-usage.ts';

test('injectIncludeUsage adds stream_options and leaves every other byte alone', () => {
  const original = '{"model":"gpt-4o","seed":9223372036854775807,"stream":true,\n  "messages":[{"role":"user","content":"\\u00e9"}]}';
  const { body, injected } = injectIncludeUsage(Buffer.from(original));
  assert.equal(injected, true);
  assert.equal(body.toString(), `{"stream_options":{"include_usage":true},${original.slice(1)}`);
  const parsed = JSON.parse(body.toString()) as Record<string, unknown>;
  assert.deepEqual(parsed.stream_options, { include_usage: true });
  assert.equal(parsed.model, 'gpt-4o');
});

test('injectIncludeUsage merges an existing stream_options', () => {
  const request = { model: 'gpt-4o', stream: true, stream_options: { include_obfuscation: false }, n: 2 };
  const { body, injected } = injectIncludeUsage(Buffer.from(JSON.stringify(request)));
  assert.equal(injected, true);
  assert.deepEqual(JSON.parse(body.toString()), { ...request, stream_options: { include_obfuscation: false, include_usage: true } });

  const explicitFalse = injectIncludeUsage(Buffer.from('{"stream":true,"stream_options":{"include_usage":false}}'));
  assert.deepEqual(JSON.parse(explicitFalse.body.toString()), { stream: true, stream_options: { include_usage: true } });
  const nullOptions = injectIncludeUsage(Buffer.from('{"stream":true,"stream_options":null}'));
  assert.deepEqual(JSON.parse(nullOptions.body.toString()), { stream: true, stream_options: { include_usage: true } });
});

test('injectIncludeUsage leaves other bodies untouched', () => {
  for (const text of [
    '{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}',
    '{"model":"gpt-4o","stream":false}',
    '{"model":"gpt-4o"}',
    '{"stream":"true"}',
    '{"stream":true,"stream_options":"bad"}',
    '[{"stream":true}]',
    '{"stream": true,',
    '',
  ]) {
    const input = Buffer.from(text);
    const result = injectIncludeUsage(input);
    assert.equal(result.injected, false, text);
    assert.equal(result.body, input);
  }
});

function chunk(choices: unknown[], usage: unknown, extra = ''): string {
  return `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",${extra}"choices":${JSON.stringify(choices)},"usage":${JSON.stringify(usage)}}\n\n`;
}

const USAGE_EVENT = chunk([], { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 });
const BEFORE = [
  ': comment\n\n',
  chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], null),
  chunk([{ index: 0, delta: { content: 'say "choices": [] 🌍' }, finish_reason: null }], null),
  chunk([{ index: 0, delta: {}, finish_reason: 'stop' }], null),
].join('');
const AFTER = 'data: [DONE]\n\n';

function strip(chunks: Buffer[]): { output: Buffer; stripped: number } {
  const stripper = new UsageChunkStripper();
  const out: Buffer[] = [];
  stripper.on('data', (data: Buffer) => out.push(data));
  for (const piece of chunks) stripper.write(piece);
  stripper.end();
  return { output: Buffer.concat(out), stripped: stripper.stripped };
}

test('removes exactly the usage chunk, across a split at every byte position', () => {
  const input = Buffer.from(BEFORE + USAGE_EVENT + AFTER);
  const expected = Buffer.from(BEFORE + AFTER);
  for (let at = 0; at <= input.length; at++) {
    const { output, stripped } = strip([input.subarray(0, at), input.subarray(at)]);
    assert.equal(output.toString(), expected.toString(), `split at ${at}`);
    assert.equal(stripped, 1);
  }
});

test('removes the usage chunk in 1-byte chunks and in random splits, with CRLF and CR line endings', () => {
  for (const ending of ['\n', '\r\n', '\r']) {
    const convert = (text: string): string => text.replaceAll('\n', ending);
    const input = Buffer.from(convert(BEFORE + USAGE_EVENT + AFTER));
    const expected = convert(BEFORE + AFTER);
    assert.equal(strip([...input].map((byte) => Buffer.of(byte))).output.toString(), expected, JSON.stringify(ending));
    let seed = 42;
    for (let round = 0; round < 50; round++) {
      const pieces: Buffer[] = [];
      for (let i = 0; i < input.length; ) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        const size = 1 + (seed % 40);
        pieces.push(input.subarray(i, i + size));
        i += size;
      }
      assert.equal(strip(pieces).output.toString(), expected);
    }
  }
});

test('a stream without a usage chunk passes byte-identical, complete events without delay', () => {
  const input = Buffer.from(BEFORE + chunk([], null) + AFTER);
  const { output, stripped } = strip([input]);
  assert.ok(output.equals(input));
  assert.equal(stripped, 0);

  const stripper = new UsageChunkStripper();
  const out: Buffer[] = [];
  stripper.on('data', (data: Buffer) => out.push(data));
  stripper.write(Buffer.from(BEFORE + 'data: {"partial'));
  assert.equal(Buffer.concat(out).toString(), BEFORE);
  stripper.end();
  assert.equal(Buffer.concat(out).toString(), `${BEFORE}data: {"partial`);
});

test('an oversized event is passed through unexamined', () => {
  const big = `data: ${'x'.repeat(300 * 1024)}\n\n`;
  const input = Buffer.from(big + USAGE_EVENT + AFTER);
  const pieces: Buffer[] = [];
  for (let i = 0; i < input.length; i += 16 * 1024) pieces.push(input.subarray(i, i + 16 * 1024));
  assert.equal(strip(pieces).output.toString(), big + AFTER);
});

test('works inside stream.pipeline', async () => {
  const input = Buffer.from(BEFORE + USAGE_EVENT + AFTER);
  const out: Buffer[] = [];
  const sink = new Writable({
    write(data: Buffer, _encoding, callback) {
      out.push(data);
      callback();
    },
  });
  await pipeline(Readable.from([input.subarray(0, 100), input.subarray(100)]), new UsageChunkStripper(), sink);
  assert.equal(Buffer.concat(out).toString(), BEFORE + AFTER);
});
