// Tests for the streaming scanner of top-level JSON members.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsonMemberScanner } from '../src/capture/json-fields.ts';

function scan(chunks: Buffer[], members = ['model', 'stream', 'usage', 'n']): Record<string, unknown> {
  const scanner = new JsonMemberScanner(members, 256);
  for (const chunk of chunks) scanner.push(chunk);
  return scanner.found;
}

const DOC = Buffer.from(
  JSON.stringify({
    messages: [
      { role: 'user', content: 'a "model": "fake", {"stream": false} \\ \u00e9 \ud83c\udf0d [' },
      { role: 'assistant', content: [{ type: 'text', text: '}}]]' }] },
    ],
    'mod\\el': 'escaped key',
    model: 'gpt-4o',
    temperature: 0.2,
    usage: { prompt_tokens: 3, nested: { deep: [1, 2, { x: '}' }] } },
    stream: true,
    n: null,
  }),
);

const EXPECTED = { model: 'gpt-4o', usage: { prompt_tokens: 3, nested: { deep: [1, 2, { x: '}' }] } }, stream: true, n: null };

test('finds top-level members, not look-alikes inside strings or nested values', () => {
  assert.deepEqual(scan([DOC]), EXPECTED);
});

test('a split at every byte position gives the same members', () => {
  for (let at = 0; at <= DOC.length; at++) {
    assert.deepEqual(scan([DOC.subarray(0, at), DOC.subarray(at)]), EXPECTED, `split at ${at}`);
  }
});

test('1-byte chunks and pretty-printed input', () => {
  const pretty = Buffer.from(JSON.stringify(JSON.parse(DOC.toString()), null, 2));
  assert.deepEqual(scan([...pretty].map((byte) => Buffer.of(byte))), EXPECTED);
});

test('values over the limit are skipped; a duplicate member keeps its last value', () => {
  const doc = Buffer.from(`{"usage": "${'x'.repeat(300)}", "model": "a", "model": "b"}`);
  assert.deepEqual(scan([doc]), { model: 'b' });
});

test('a cut-short document reports what completed; a non-object root reports nothing', () => {
  assert.deepEqual(scan([Buffer.from('{"model":"gpt-4o","messages":[{"content":"abc')]), { model: 'gpt-4o' });
  assert.deepEqual(scan([Buffer.from('{"model":"gpt-4o"')]), {});
  assert.deepEqual(scan([Buffer.from('[{"model":"gpt-4o"}]')]), {});
  assert.deepEqual(scan([Buffer.from('garbage {"model":"x"}')]), {});
});
