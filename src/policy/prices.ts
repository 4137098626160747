/**
 * The price table: OpenAI's published prices shipped as data (prices.json, with the date they
 * were taken and where from), the `prices:` additions and overrides of the policy file, and
 * the lookup of a model's price (dated snapshots fall back to their base model).
 * Imported rather than read from disk so that the build (tsc to dist/) carries the file along.
 */
import shippedFile from './prices.json' with { type: 'json' };
import { AppError } from '../errors.ts';
import { didYouMean } from './did-you-mean.ts';

/** USD per 1M tokens of each kind; a kind without a price falls back as cost.ts says. */
export interface TokenPrices {
  input?: number;
  cachedInput?: number;
  output?: number;
  audioInput?: number;
  cachedAudioInput?: number;
  audioOutput?: number;
  imageInput?: number;
  cachedImageInput?: number;
}

export interface LongContextPrices extends TokenPrices {
  /** The whole request is billed at these rates when its input tokens exceed this. */
  aboveInputTokens: number;
}

export interface ModelPrice extends TokenPrices {
  longContext?: LongContextPrices;
  /** Rates when the response says `service_tier: "priority"` (called "fast" since 2026-07-30). */
  priority?: TokenPrices;
  /** Rates when the response says `service_tier: "flex"`. */
  flex?: TokenPrices;
  /** USD per minute of audio (whisper-1), billed to the nearest second. */
  perMinute?: number;
  /** USD per 1M characters of the speech request's `input` (tts-1, tts-1-hd). */
  perMillionCharacters?: number;
  /** USD per image, by quality then size (dall-e-2, dall-e-3). */
  images?: Record<string, Record<string, number>>;
  /** No charge (moderation models). */
  free?: boolean;
  /** Priced as this other entry of the table (aliases such as `gpt-5-chat-latest`). */
  sameAs?: string;
}

export interface PriceTable {
  /** The day the shipped prices were read; overrides keep it (they say so in `overridden`). */
  takenAt: string;
  sources: readonly string[];
  models: ReadonlyMap<string, ModelPrice>;
  /** Model names whose entry came from the policy file's `prices:`. */
  overridden: ReadonlySet<string>;
}

/** A price entry that is not what the contract allows; the message names the place. */
export class PriceError extends AppError {
  readonly code = 'price_invalid';
  readonly status = 500;
  override name = 'PriceError';
}

const TOKEN_KINDS = [
  'input',
  'cachedInput',
  'output',
  'audioInput',
  'cachedAudioInput',
  'audioOutput',
  'imageInput',
  'cachedImageInput',
] as const satisfies readonly (keyof TokenPrices)[];
const FIELDS = new Set<string>([...TOKEN_KINDS, 'longContext', 'priority', 'flex', 'perMinute', 'perMillionCharacters', 'images', 'free', 'sameAs']);

/**
 * Validates one price entry (`{ input, cachedInput, output, ... }`, USD per 1M tokens) of the
 * shipped table or of the policy file's `prices:`; `where` names it in errors, e.g.
 * `policy.yaml: prices["gpt-4o"]`.
 */
export function parseModelPrice(value: unknown, where: string): ModelPrice {
  const entry = plainObject(value, where);
  const price: ModelPrice = {};
  for (const key of Object.keys(entry)) {
    if (!FIELDS.has(key)) throw new PriceError(`${where}.${key}: ${unknownField(key, [...FIELDS])}`);
  }
  Object.assign(price, tokenPrices(entry, where));
  if (entry.longContext !== undefined) {
    const at = `${where}.longContext`;
    const long = plainObject(entry.longContext, at);
    for (const key of Object.keys(long)) {
      if (key !== 'aboveInputTokens' && !(TOKEN_KINDS as readonly string[]).includes(key)) {
        throw new PriceError(`${at}.${key}: ${unknownField(key, ['aboveInputTokens', ...TOKEN_KINDS])}`);
      }
    }
    price.longContext = { aboveInputTokens: amount(long.aboveInputTokens, `${at}.aboveInputTokens`), ...tokenPrices(long, at) };
  }
  for (const tier of ['priority', 'flex'] as const) {
    if (entry[tier] === undefined) continue;
    const at = `${where}.${tier}`;
    const rates = plainObject(entry[tier], at);
    for (const key of Object.keys(rates)) {
      if (!(TOKEN_KINDS as readonly string[]).includes(key)) throw new PriceError(`${at}.${key}: ${unknownField(key, TOKEN_KINDS)}`);
    }
    price[tier] = tokenPrices(rates, at);
  }
  if (entry.perMinute !== undefined) price.perMinute = amount(entry.perMinute, `${where}.perMinute`);
  if (entry.perMillionCharacters !== undefined) {
    price.perMillionCharacters = amount(entry.perMillionCharacters, `${where}.perMillionCharacters`);
  }
  if (entry.images !== undefined) price.images = imagePrices(entry.images, `${where}.images`);
  if (entry.free !== undefined) {
    if (typeof entry.free !== 'boolean') throw new PriceError(`${where}.free: ${show(entry.free)} is not true or false`);
    price.free = entry.free;
  }
  if (entry.sameAs !== undefined) {
    if (typeof entry.sameAs !== 'string' || entry.sameAs === '') {
      throw new PriceError(`${where}.sameAs: ${show(entry.sameAs)} is not a model name`);
    }
    if (Object.keys(entry).length > 1) throw new PriceError(`${where}: sameAs cannot be combined with prices`);
    price.sameAs = entry.sameAs;
  }
  if (Object.keys(price).length === 0) throw new PriceError(`${where}: no price given`);
  return price;
}

/** Validates the policy file's `prices:` mapping (model name → price entry). */
export function parsePriceOverrides(value: unknown, where = 'prices'): Map<string, ModelPrice> {
  const overrides = new Map<string, ModelPrice>();
  for (const [model, entry] of Object.entries(plainObject(value, where))) {
    if (model.trim() === '') throw new PriceError(`${where}: an empty model name`);
    overrides.set(model.toLowerCase(), parseModelPrice(entry, `${where}[${JSON.stringify(model)}]`));
  }
  return overrides;
}

/**
 * The table with the policy file's entries added; an entry for a model the table lists
 * replaces it whole (an override states the model's full price: a field it leaves out is
 * not priced, rather than silently kept from the shipped table).
 */
export function mergePrices(table: PriceTable, overrides: ReadonlyMap<string, ModelPrice>): PriceTable {
  if (overrides.size === 0) return table;
  const models = new Map(table.models);
  const overridden = new Set(table.overridden);
  for (const [model, price] of overrides) {
    models.set(model.toLowerCase(), price);
    overridden.add(model.toLowerCase());
  }
  return { takenAt: table.takenAt, sources: table.sources, models, overridden };
}

let shipped: PriceTable | undefined;

/** The table shipped in prices.json, validated on first use. */
export function shippedPrices(): PriceTable {
  shipped ??= parsePriceTable(shippedFile, 'prices.json');
  return shipped;
}

export function parsePriceTable(value: unknown, where: string): PriceTable {
  const file = plainObject(value, where);
  if (typeof file.takenAt !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(file.takenAt)) {
    throw new PriceError(`${where}.takenAt: ${show(file.takenAt)} is not a YYYY-MM-DD date`);
  }
  const sources = file.sources;
  if (!Array.isArray(sources) || sources.length === 0 || !sources.every((s): s is string => typeof s === 'string')) {
    throw new PriceError(`${where}.sources: not a list of where the prices come from`);
  }
  const models = parsePriceOverrides(file.models, `${where}.models`);
  for (const [model, price] of models) {
    if (price.sameAs !== undefined && !models.has(price.sameAs.toLowerCase())) {
      throw new PriceError(`${where}.models[${JSON.stringify(model)}].sameAs: ${price.sameAs} is not in the table`);
    }
  }
  return { takenAt: file.takenAt, sources, models, overridden: new Set() };
}

const DATED = /-\d{4}-\d{2}-\d{2}$/; // gpt-4o-2024-08-06
const DATED_SHORT = /-\d{4}$/; // gpt-4-0613, gpt-3.5-turbo-0125
const MAX_ALIASES = 4;

/**
 * The price of `model`, or null when the table has none. An exact entry wins; a dated
 * snapshot falls back to its base model (`gpt-4.1-mini-2025-04-14` → `gpt-4.1-mini`).
 * A fine-tuned model `ft:BASE:org:name:id` is priced only by an entry `ft:BASE:org:name:id`,
 * `ft:BASE` or `ft:BASE-without-date`: OpenAI bills fine-tuned inference at its own rates, so
 * the base model's price would be wrong, and unknown is better than wrong.
 */
export function findModelPrice(table: PriceTable, model: string | null): ModelPrice | null {
  if (model === null || model === '') return null;
  let name = model.trim().toLowerCase();
  for (let hops = 0; hops <= MAX_ALIASES; hops++) {
    const price = lookup(table, name);
    if (price === null) return null;
    if (price.sameAs === undefined) return price;
    name = price.sameAs.toLowerCase();
  }
  return null; // an alias chain too long, or a loop (a: {sameAs: b}, b: {sameAs: a})
}

function lookup(table: PriceTable, name: string): ModelPrice | null {
  const exact = table.models.get(name);
  if (exact !== undefined) return exact;
  if (name.startsWith('ft:')) {
    const base = name.slice(3).split(':')[0] ?? '';
    if (base === '') return null;
    return table.models.get(`ft:${base}`) ?? table.models.get(`ft:${undated(base)}`) ?? null;
  }
  const base = undated(name);
  return base === name ? null : (table.models.get(base) ?? null);
}

function undated(name: string): string {
  if (DATED.test(name)) return name.replace(DATED, '');
  return DATED_SHORT.test(name) ? name.replace(DATED_SHORT, '') : name;
}

function tokenPrices(entry: Record<string, unknown>, where: string): TokenPrices {
  const prices: TokenPrices = {};
  for (const kind of TOKEN_KINDS) {
    if (entry[kind] !== undefined) prices[kind] = amount(entry[kind], `${where}.${kind}`);
  }
  return prices;
}

function imagePrices(value: unknown, where: string): Record<string, Record<string, number>> {
  const images: Record<string, Record<string, number>> = {};
  for (const [quality, sizes] of Object.entries(plainObject(value, where))) {
    const at = `${where}.${quality}`;
    const bySize: Record<string, number> = {};
    for (const [size, usd] of Object.entries(plainObject(sizes, at))) {
      if (!/^\d+x\d+$/.test(size)) throw new PriceError(`${at}: ${JSON.stringify(size)} is not a size like 1024x1024`);
      bySize[size] = amount(usd, `${at}.${size}`);
    }
    images[quality.toLowerCase()] = bySize;
  }
  return images;
}

function amount(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new PriceError(`${where}: ${show(value)} is not a number of at least 0`);
  }
  return value;
}

function plainObject(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new PriceError(`${where}: ${show(value)} is not a mapping`);
  }
  return value as Record<string, unknown>;
}

function unknownField(key: string, known: readonly string[]): string {
  const near = didYouMean(key, known);
  return near === null ? `unknown price field (known: ${known.join(', ')})` : `unknown price field; did you mean "${near}"?`;
}

function show(value: unknown): string {
  const text = value === undefined ? 'missing' : JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}
