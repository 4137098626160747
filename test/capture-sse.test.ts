// Tests for the incremental SSE parser: WHATWG field rules, line endings and chunk splits anywhere.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SseParser } from '../src/capture/sse.ts';

type Event = [string | null, string];

function parse(chunks: Iterable<Buffer>, options?: { maxEventChars?: number }): Event[] {
  const events: Event[] = [];
  const parser = new SseParser((event, data) => events.push([event, data]), options);
  for (const chunk of chunks) parser.push(chunk);
  parser.end();
  return events;
}

function* bytesOf(buffer: Buffer): Generator<Buffer> {
  for (let i = 0; i < buffer.length; i++) yield buffer.subarray(i, i + 1);
}

// A stream mixing every line ending, comments, multi-line data and multi-byte characters.
const STREAM = Buffer.from(
  '\uFEFF: keep-alive comment\n' +
    'data: {"delta":"Grüße 🌍 日本"}\n\n' +
    'event: response.output_text.delta\r\n' +
    'data: {"type":"response.output_text.delta","delta":"é"}\r\n\r\n' +
    'event:custom\rdata:no-space\rdata:  two spaces\r\r' +
    'id: 7\nretry: 1000\ndata\ndata: line2\n\n' +
    'data: [DONE]\n\n',
);

const EXPECTED: Event[] = [
  [null, '{"delta":"Grüße 🌍 日本"}'],
  ['response.output_text.delta', '{"type":"response.output_text.delta","delta":"é"}'],
  ['custom', 'no-space\n two spaces'],
  [null, '\nline2'],
  [null, '[DONE]'],
];

test('parses fields, comments, and LF / CRLF / CR line endings', () => {
  assert.deepEqual(parse([STREAM]), EXPECTED);
});

test('a split at every byte position gives the same events', () => {
  for (let at = 0; at <= STREAM.length; at++) {
    assert.deepEqual(parse([STREAM.subarray(0, at), STREAM.subarray(at)]), EXPECTED, `split at ${at}`);
  }
});

test('1-byte chunks, including inside UTF-8 characters and CRLF pairs', () => {
  assert.deepEqual(parse(bytesOf(STREAM)), EXPECTED);
});

test('three-way splits give the same events', () => {
  for (let a = 0; a < STREAM.length; a += 3) {
    for (let b = a; b <= STREAM.length; b += 5) {
      const chunks = [STREAM.subarray(0, a), STREAM.subarray(a, b), STREAM.subarray(b)];
      assert.deepEqual(parse(chunks), EXPECTED, `split at ${a}, ${b}`);
    }
  }
});

test('an event without data is not dispatched; an empty data line is', () => {
  assert.deepEqual(parse([Buffer.from('event: ping\n\ndata:\n\nevent:\ndata: x\n\n')]), [
    [null, ''],
    [null, 'x'],
  ]);
});

test('an event not closed by a blank line is discarded at end of stream', () => {
  assert.deepEqual(parse([Buffer.from('data: complete\n\ndata: cut short\n')]), [[null, 'complete']]);
  assert.deepEqual(parse([Buffer.from('data: no newline at all')]), []);
});

test('a CR at the end of a chunk followed by a non-LF starts a new line', () => {
  assert.deepEqual(parse([Buffer.from('data: a\r'), Buffer.from('\r'), Buffer.from('data: b\r\n\r\n')]), [
    [null, 'a'],
    [null, 'b'],
  ]);
});

test('an oversized event is dropped and the next one still parsed', () => {
  const big = `data: ${'x'.repeat(200)}\n\n`;
  const events = parse(bytesOf(Buffer.from(`${big}data: small\n\ndata: ${'y'.repeat(60)}\ndata: ${'y'.repeat(60)}\n\ndata: ok\n\n`)), {
    maxEventChars: 100,
  });
  assert.deepEqual(events, [
    [null, 'small'],
    [null, 'ok'],
  ]);
});
