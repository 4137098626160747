// Tests for the shipped price table (its provenance, its coverage), the lookup with snapshot
// and fine-tune rules, and the policy file's `prices:` overrides.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  PriceError,
  findModelPrice,
  mergePrices,
  parseModelPrice,
  parsePriceOverrides,
  parsePriceTable,
  shippedPrices,
  type ModelPrice,
} from '../src/policy/prices.ts';

/** The standard text-token rates of an entry, without its other fields (tiers, long context). */
function standard(price: ModelPrice | null): Pick<ModelPrice, 'input' | 'cachedInput' | 'output'> | null {
  if (price === null) return null;
  const { input, cachedInput, output } = price;
  return Object.fromEntries(Object.entries({ input, cachedInput, output }).filter(([, v]) => v !== undefined));
}

test('the shipped table says when and where its prices were taken', () => {
  const table = shippedPrices();
  assert.match(table.takenAt, /^20\d\d-\d\d-\d\d$/);
  assert.ok(table.sources.some((s) => s.startsWith('https://developers.openai.com/api/docs/pricing')));
  assert.equal(table.overridden.size, 0);
});

test('the shipped table covers the models the brief names', () => {
  const table = shippedPrices();
  const required = [
    'gpt-5', 'gpt-5-mini', 'gpt-5-nano', 'gpt-4.1', 'gpt-4.1-mini', 'gpt-4.1-nano', 'gpt-4o', 'gpt-4o-mini',
    'o1', 'o3', 'o3-mini', 'o4-mini', 'gpt-4-turbo', 'gpt-3.5-turbo', 'text-embedding-3-small',
    'text-embedding-3-large', 'text-embedding-ada-002', 'gpt-4o-realtime-preview', 'gpt-realtime',
    'gpt-4o-audio-preview', 'gpt-4o-mini-tts', 'whisper-1', 'tts-1', 'tts-1-hd', 'gpt-4o-transcribe',
    'gpt-4o-mini-transcribe', 'dall-e-2', 'dall-e-3', 'gpt-image-1', 'omni-moderation-latest',
  ];
  for (const model of required) assert.notEqual(findModelPrice(table, model), null, model);
});

test('main models carry the published prices (USD per 1M tokens)', () => {
  const table = shippedPrices();
  assert.deepEqual(standard(findModelPrice(table, 'gpt-4o')), { input: 2.5, cachedInput: 1.25, output: 10 });
  assert.deepEqual(standard(findModelPrice(table, 'gpt-4o-mini')), { input: 0.15, cachedInput: 0.075, output: 0.6 });
  assert.deepEqual(standard(findModelPrice(table, 'gpt-5')), { input: 1.25, cachedInput: 0.125, output: 10 });
  assert.deepEqual(standard(findModelPrice(table, 'gpt-4.1')), { input: 2, cachedInput: 0.5, output: 8 });
  assert.deepEqual(standard(findModelPrice(table, 'o3')), { input: 2, cachedInput: 0.5, output: 8 });
  assert.deepEqual(findModelPrice(table, 'whisper-1'), { perMinute: 0.006 });
  assert.deepEqual(findModelPrice(table, 'tts-1-hd'), { perMillionCharacters: 30 });
  assert.equal(findModelPrice(table, 'dall-e-3')?.images?.hd?.['1792x1024'], 0.12);
});

test('dated snapshots fall back to their base model unless listed', () => {
  const table = shippedPrices();
  assert.equal(findModelPrice(table, 'gpt-4o-2024-08-06'), findModelPrice(table, 'gpt-4o'));
  assert.equal(findModelPrice(table, 'gpt-4.1-mini-2025-04-14'), findModelPrice(table, 'gpt-4.1-mini'));
  assert.equal(findModelPrice(table, 'gpt-4-0613'), findModelPrice(table, 'gpt-4'));
  assert.equal(findModelPrice(table, 'gpt-3.5-turbo-0125'), findModelPrice(table, 'gpt-3.5-turbo'));
  // Listed snapshots keep their own price: gpt-4o's first snapshot cost twice as much.
  assert.deepEqual(standard(findModelPrice(table, 'gpt-4o-2024-05-13')), { input: 5, output: 15 });
  assert.deepEqual(findModelPrice(table, 'gpt-4o-2024-05-13')?.priority, { input: 8.75, output: 26.25 });
  assert.equal(findModelPrice(table, 'gpt-4o-realtime-preview-2024-10-01')?.audioInput, 100);
  assert.equal(findModelPrice(table, 'gpt-4o-realtime-preview-2024-12-17')?.audioInput, 40);
});

test('aliases resolve to the entry they name; lookups ignore case', () => {
  const table = shippedPrices();
  assert.equal(findModelPrice(table, 'gpt-5-chat-latest'), findModelPrice(table, 'gpt-5'));
  assert.equal(findModelPrice(table, 'gpt-realtime-2025-08-28'), findModelPrice(table, 'gpt-realtime'));
  assert.equal(findModelPrice(table, 'GPT-4o'), findModelPrice(table, 'gpt-4o'));
});

test('fine-tuned models are priced from an ft: entry, never as their base model', () => {
  const table = shippedPrices();
  assert.deepEqual(findModelPrice(table, 'ft:gpt-4o-mini-2024-07-18:acme::AbC123'), { input: 0.3, cachedInput: 0.15, output: 1.2 });
  assert.deepEqual(findModelPrice(table, 'ft:gpt-3.5-turbo-0125:acme:support:9xYz'), { input: 3, output: 6 });
  // No ft:o4-mini entry: unknown, although o4-mini itself is priced.
  assert.equal(findModelPrice(table, 'ft:o4-mini-2025-04-16:acme::r1'), null);
  assert.notEqual(findModelPrice(table, 'o4-mini-2025-04-16'), null);
});

test('unknown models are unpriced', () => {
  const table = shippedPrices();
  assert.equal(findModelPrice(table, 'my-local-llama'), null);
  assert.equal(findModelPrice(table, 'gpt-9-2030-01-01'), null);
  assert.equal(findModelPrice(table, ''), null);
  assert.equal(findModelPrice(table, null), null);
});

test('overrides add models and replace listed ones whole', () => {
  const overrides = parsePriceOverrides({
    'ft:gpt-4o-mini:acme:2024': { input: 0.3, cachedInput: 0.15, output: 1.2 },
    'gpt-4o': { input: 2, output: 8 },
    'acme-router': { sameAs: 'gpt-4.1-mini' },
  });
  const table = mergePrices(shippedPrices(), overrides);
  assert.deepEqual(findModelPrice(table, 'ft:gpt-4o-mini:acme:2024'), { input: 0.3, cachedInput: 0.15, output: 1.2 });
  // Replaced whole: the shipped cachedInput of gpt-4o is not kept.
  assert.deepEqual(findModelPrice(table, 'gpt-4o'), { input: 2, output: 8 });
  // Snapshots of an overridden model follow the override.
  assert.deepEqual(findModelPrice(table, 'gpt-4o-2024-11-20'), { input: 2, output: 8 });
  assert.equal(findModelPrice(table, 'acme-router'), findModelPrice(table, 'gpt-4.1-mini'));
  assert.deepEqual([...table.overridden].sort(), ['acme-router', 'ft:gpt-4o-mini:acme:2024', 'gpt-4o']);
  // The shipped table itself is untouched.
  assert.deepEqual(standard(findModelPrice(shippedPrices(), 'gpt-4o')), { input: 2.5, cachedInput: 1.25, output: 10 });
  assert.equal(mergePrices(shippedPrices(), new Map()), shippedPrices());
  // An alias loop prices nothing rather than spinning.
  const loop = mergePrices(shippedPrices(), parsePriceOverrides({ a: { sameAs: 'b' }, b: { sameAs: 'a' } }));
  assert.equal(findModelPrice(loop, 'a'), null);
});

test('a bad price entry is refused with the place it is in', () => {
  const refused = (value: unknown, message: RegExp) =>
    assert.throws(() => parsePriceOverrides(value, 'policy.yaml: prices'), (error: unknown) => {
      assert.ok(error instanceof PriceError);
      assert.match(error.message, message);
      return true;
    });
  refused({ 'gpt-4o': { input: -1 } }, /^policy\.yaml: prices\["gpt-4o"\]\.input: -1 is not a number of at least 0$/);
  refused({ 'gpt-4o': { input: '2.5' } }, /prices\["gpt-4o"\]\.input: "2\.5" is not a number/);
  refused({ 'gpt-4o': { inptu: 2 } }, /prices\["gpt-4o"\]\.inptu: unknown price field/);
  refused({ 'gpt-4o': {} }, /prices\["gpt-4o"\]: no price given/);
  refused({ 'gpt-4o': { sameAs: 'gpt-4.1', input: 1 } }, /sameAs cannot be combined/);
  refused({ 'dall-e-9': { images: { hd: { big: 1 } } } }, /images\.hd: "big" is not a size/);
  refused({ 'gpt-x': { longContext: { input: 1 } } }, /longContext\.aboveInputTokens: missing is not a number/);
  refused([], /^policy\.yaml: prices: \[\] is not a mapping$/);
  refused({ 'gpt-x': { input: 1, priority: { inputt: 2 } } }, /prices\["gpt-x"\]\.priority\.inputt: unknown price field/);
  refused({ 'gpt-x': { input: 1, flex: { output: -2 } } }, /prices\["gpt-x"\]\.flex\.output: -2 is not a number/);
  assert.throws(() => parseModelPrice({ free: 'yes' }, 'p'), /p\.free: "yes" is not true or false/);
});

test('the table file itself is validated: an alias to a missing entry is refused', () => {
  const file = JSON.parse(readFileSync(new URL('../src/policy/prices.json', import.meta.url), 'utf8')) as {
    models: Record<string, unknown>;
  };
  assert.ok(parsePriceTable(file, 'prices.json').models.size > 50);
  file.models['gpt-oops'] = { sameAs: 'gpt-nonexistent' };
  assert.throws(() => parsePriceTable(file, 'prices.json'), /prices\.json\.models\["gpt-oops"\]\.sameAs: gpt-nonexistent is not in the table/);
  assert.throws(() => parsePriceTable({ ...file, takenAt: 'yesterday' }, 'prices.json'), /takenAt: "yesterday" is not a YYYY-MM-DD date/);
});
