/**
 * An audit record as one line of MongoDB relaxed Extended JSON, written by bson's own EJSON
 * so `mongoimport` and `EJSON.parse` read it back; user keys they would misread are escaped.
 */
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { EJSON } from 'bson';
import { JSON_TEXT, type AuditRecord, type CapturedBody } from '../record/record.ts';

// EJSON.stringify copies the whole record (serializeValue) before JSON.stringify writes the copy,
// as much garbage again as the record. Almost every record is plain JSON data apart from its two
// dates, and for such a record JSON.stringify, with the dates written as EJSON writes them, gives
// the very same line without the copy. A walk over the record (needed anyway to find the keys to
// escape) decides; any other record still goes to EJSON. Relaxed Extended JSON:
// https://www.mongodb.com/docs/manual/reference/mongodb-extended-json/

// The parsed JSON bodies are most of a record, and the exchange already holds their text: a body
// whose text reads back as its parsed value goes into the line as those bytes instead of being
// serialised again (see `embeddable`).

export interface RecordLine {
  /**
   * The line without its newline: text (the API key's member a piece of its own) and the JSON
   * bodies' own bytes where they stand.
   */
  pieces: (string | Buffer)[];
  /** Some user keys had to be escaped (see `escapeKeys`). */
  escaped: boolean;
  /** Nested too deep: the JSON bodies are written as their text (see `recordLine`). */
  bodiesAsText: boolean;
}

const DOLLAR = 36;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isRiskyKey(key: string): boolean {
  return key.charCodeAt(0) === DOLLAR || key === '_bsontype' || key.includes('\0');
}

/** A cheap pre-check, so that only records with such keys take the careful path. */
function hasRiskyKey(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasRiskyKey);
  if (!isPlainObject(value)) return false;
  for (const key of Object.keys(value)) {
    if (isRiskyKey(key) || hasRiskyKey(value[key])) return true;
  }
  return false;
}

function shallow(value: unknown): unknown {
  if (Array.isArray(value)) return [];
  return typeof value === 'object' && value !== null ? {} : value;
}

/**
 * Whether EJSON.parse would turn this object into something else (a Date, an ObjectId, a DBRef,
 * null…) or refuse it. bson itself is asked, on a one-level copy, so its own rules decide.
 */
function misreadByEjson(entries: [string, unknown][]): boolean {
  if (!entries.some(([key]) => key.charCodeAt(0) === DOLLAR)) return false;
  const probe = Object.fromEntries(entries.map(([key, value]) => [key, shallow(value)]));
  try {
    const back: unknown = EJSON.parse(JSON.stringify(probe), { relaxed: true });
    return !isPlainObject(back) || JSON.stringify(back) !== JSON.stringify(probe);
  } catch {
    return true;
  }
}

/** Keys that neither EJSON.parse nor BSON take as they are, whatever the object. */
function bsonSafeKey(key: string): string {
  const clean = key.includes('\0') ? key.replaceAll('\0', '\u2400') : key;
  return clean === '_bsontype' ? '\uFF3Fbsontype' : clean;
}

function escapeArray(array: unknown[]): unknown[] {
  let copy: unknown[] | null = null;
  array.forEach((item, index) => {
    const escaped = escapeKeys(item);
    if (escaped !== item) (copy ??= array.slice())[index] = escaped;
  });
  return copy ?? array;
}

/**
 * User JSON (bodies, header names) may hold keys that Extended JSON readers (EJSON.parse,
 * mongoimport) would read as a type (`{"$date": …}`, `{"$oid": …}`) or that BSON rejects
 * (`_bsontype`, NUL). Those get their first character in fullwidth form — `$oid` -> `＄oid`
 * (U+FF04), `_bsontype` -> `＿bsontype` (U+FF3F) — and NUL becomes `␀` (U+2400). `$` keys that
 * read back unchanged (`$ref`, `$defs`, `$schema` of a JSON schema) stay as they are.
 * Returns the value itself when nothing changed.
 */
function escapeKeys(value: unknown): unknown {
  if (Array.isArray(value)) return escapeArray(value);
  if (!isPlainObject(value)) return value;
  let changed = false;
  const entries = Object.entries(value).map(([key, item]): [string, unknown] => {
    const safeKey = bsonSafeKey(key);
    const escaped = escapeKeys(item);
    changed ||= safeKey !== key || escaped !== item;
    return [safeKey, escaped];
  });
  if (misreadByEjson(entries)) {
    changed = true;
    for (const entry of entries) {
      if (entry[0].charCodeAt(0) === DOLLAR) entry[0] = `\uFF04${entry[0].slice(1)}`;
    }
  }
  return changed ? Object.fromEntries(entries) : value;
}

/**
 * MongoDB's documented nesting limit (the record itself is the first level); JSON.stringify and
 * EJSON overflow the stack on much deeper values (thousands of levels). A record that deep has
 * its JSON bodies written as text instead (`recordLine`), so it is neither lost nor refused.
 * Depths below count the record as 0, so an object or array at depth MAX_DEPTH is too deep.
 */
const MAX_DEPTH = 100;
const TOO_DEEP = `nested deeper than ${MAX_DEPTH} levels`;

/** Whether `value` holds an object or array at MAX_DEPTH, `value` itself being at `depth`. */
function exceedsDepth(value: unknown, depth: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  if (depth >= MAX_DEPTH) return true;
  const items = Array.isArray(value) ? value : isPlainObject(value) ? Object.values(value) : [];
  return items.some((item) => exceedsDepth(item, depth + 1));
}

/**
 * Whether JSON.stringify writes `value` exactly as EJSON.stringify (relaxed) does: plain objects
 * without risky keys, arrays, strings, booleans, null and finite numbers, which is what JSON.parse
 * makes and what records are built from. Not `undefined` (EJSON writes null), NaN or Infinity
 * (`$numberDouble`), a Date, a bigint, a class instance or anything else EJSON converts.
 * Throws a RangeError past MAX_DEPTH.
 */
function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value);
    case 'object':
      if (value === null) return true;
      if (depth >= MAX_DEPTH) throw new RangeError(TOO_DEEP);
      if (Array.isArray(value)) return hasPlainItems(value, depth + 1);
      return isPlainObject(value) && hasPlainMembers(value, depth + 1);
    default:
      return false;
  }
}

function hasPlainItems(array: unknown[], depth: number): boolean {
  for (const item of array) {
    if (!isPlainJson(item, depth)) return false;
  }
  return true;
}

function hasPlainMembers(object: Record<string, unknown>, depth: number): boolean {
  for (const key in object) {
    if (isRiskyKey(key) || !isPlainJson(object[key], depth)) return false;
  }
  return true;
}

// Bounds of the dates EJSON (relaxed) writes as an ISO string: 1970 to 9999.
const MIN_ISO_DATE = -1;
const MAX_ISO_DATE = 253402300800000;

/** A Date as EJSON.stringify (relaxed) writes it: ISO without `.000`, else epoch ms as a Long. */
function ejsonDate(date: Date): { $date: string | { $numberLong: string } } {
  const ms = date.getTime();
  if (!(ms > MIN_ISO_DATE && ms < MAX_ISO_DATE)) return { $date: { $numberLong: ms.toString() } };
  return { $date: isoString(ms) };
}

// Dates of records written together share their minute, so its ISO prefix is formatted once
// rather than by toISOString for each of every record's two dates.
let prefixMinute = Number.NaN;
let prefix = '';

/** `date.toISOString()` for a date from 1970 to 9999, without `.000`, as EJSON writes it. */
function isoString(ms: number): string {
  const minute = Math.floor(ms / 60_000);
  if (minute !== prefixMinute) {
    prefix = new Date(minute * 60_000).toISOString().slice(0, 'YYYY-MM-DDTHH:MM:'.length);
    prefixMinute = minute;
  }
  const rest = ms - minute * 60_000;
  const seconds = String(Math.floor(rest / 1000)).padStart(2, '0');
  const millis = rest % 1000;
  return millis === 0 ? `${prefix}${seconds}Z` : `${prefix}${seconds}.${String(millis).padStart(3, '0')}Z`;
}

const LF = 0x0a;
const CR = 0x0d;
const QUOTE_DOLLAR = Buffer.from('"$');
const ESCAPE_U00 = Buffer.from('\\u00');
const ESCAPED_DOLLAR = Buffer.from('\\u0024');
const ESCAPED_NUL = Buffer.from('\\u0000');

/**
 * The body's JSON text, if it can stand in the line for its parsed value (which `plainLine` has
 * found plain: no key EJSON would misread, no number JSON cannot write, not too deep). Inside
 * valid JSON a line break can only be whitespace, but it would end the journal line; and bytes
 * that are not UTF-8 were read as U+FFFD by the parser, so they would not read back the same.
 */
function embeddable(body: CapturedBody): Buffer | null {
  const text = body[JSON_TEXT];
  if (text === undefined || body.bodyEncoding !== 'json') return null;
  if (text.includes(LF) || text.includes(CR) || !isUtf8(text)) return null;
  // The parsed value keeps only the last of duplicate keys, so it cannot vouch for the others:
  // a `$` key (plain or escaped) or a NUL anywhere in the text sends the body the careful way.
  // Byte and Buffer needles first: a string needle is converted on every call.
  if (text.includes(DOLLAR) && text.includes(QUOTE_DOLLAR)) return null;
  return text.includes(ESCAPE_U00) && (text.includes(ESCAPED_DOLLAR) || text.includes(ESCAPED_NUL)) ? null : text;
}

// Each value written apart (see `plainLine`) has a mark standing for it while the rest of the
// record is stringified. Random per process and starting with NUL, so no user string is written
// the same; `splice` checks anyway that no other mark is left.
const MARK = `\0${randomUUID()}`;
const MARK_JSON_START = JSON.stringify(MARK).slice(0, -1);

interface Mark {
  value: string;
  json: string;
}

function mark(name: string): Mark {
  const value = `${MARK}:${name}`;
  return { value, json: JSON.stringify(value) };
}

const API_KEY_MARK = mark('apiKey');
const REQUEST_BODY_MARK = mark('request');
const RESPONSE_BODY_MARK = mark('response');

/** `line` with each mark replaced by its text; null if a mark is missing, out of order or extra. */
function splice(line: string, apart: readonly [Mark, string | Buffer | null][]): (string | Buffer)[] | null {
  const pieces: (string | Buffer)[] = [];
  let from = 0;
  for (const [{ json }, text] of apart) {
    if (text === null) continue;
    const at = line.indexOf(json, from);
    if (at === -1) return null;
    pieces.push(line.slice(from, at), text);
    from = at + json.length;
  }
  if (line.includes(MARK_JSON_START, from)) return null;
  pieces.push(line.slice(from));
  return pieces;
}

/** The record's line by JSON.stringify, or null when only EJSON writes it right. */
function plainLine(record: AuditRecord): (string | Buffer)[] | null {
  const { startedAt, endedAt, apiKey, request, response } = record;
  if (!(startedAt instanceof Date && endedAt instanceof Date)) return null;
  for (const key in record) {
    if (key === 'startedAt' || key === 'endedAt') continue;
    if (isRiskyKey(key) || !isPlainJson(record[key as keyof AuditRecord], 1)) return null;
  }
  // The key's hint holds a `…`, which would make the whole line a two-byte string, twice the
  // memory and dearer to search and encode; written apart, it keeps an ASCII line one-byte.
  const apiKeyText = apiKey === null ? null : JSON.stringify(apiKey);
  const requestText = embeddable(request);
  const responseText = embeddable(response);
  // Spreading keeps the members in order, the dates where they were.
  const line = JSON.stringify({
    ...record,
    startedAt: ejsonDate(startedAt),
    endedAt: ejsonDate(endedAt),
    apiKey: apiKeyText === null ? null : API_KEY_MARK.value,
    request: requestText === null ? request : { ...request, body: REQUEST_BODY_MARK.value },
    response: responseText === null ? response : { ...response, body: RESPONSE_BODY_MARK.value },
  });
  // In the order build-record.ts writes them; `splice` gives up (and EJSON writes) on any other.
  return splice(line, [[API_KEY_MARK, apiKeyText], [REQUEST_BODY_MARK, requestText], [RESPONSE_BODY_MARK, responseText]]);
}

function serialise(record: AuditRecord): RecordLine {
  const plain = plainLine(record);
  if (plain !== null) return { pieces: plain, escaped: false, bodiesAsText: false };
  // The careful path is for rare records; it walks them once more, for their depth.
  if (exceedsDepth(record, 0)) throw new RangeError(TOO_DEEP);
  const safe = hasRiskyKey(record) ? escapeKeys(record) : record;
  return { pieces: [EJSON.stringify(safe, { relaxed: true })], escaped: safe !== record, bodiesAsText: false };
}

/** The body as its JSON text if it is nested too deep (no text kept: omitted), else as it is. */
function flattened(body: CapturedBody): Pick<CapturedBody, 'body' | 'bodyEncoding'> {
  // The record and the request or response object are depths 0 and 1.
  if (body.bodyEncoding !== 'json' || !exceedsDepth(body.body, 2)) return body;
  const text = body[JSON_TEXT];
  return { body: text?.toString() ?? null, bodyEncoding: text === undefined ? 'omitted' : 'text' };
}

/**
 * A JSON body too deep to write (see MAX_DEPTH) is written as its text instead. Throws where
 * EJSON.stringify does (a foreign `_bsontype` object, a throwing getter), and for a record too
 * deep outside its bodies, which records built from exchanges never are.
 */
export function recordLine(record: AuditRecord): RecordLine {
  try {
    return serialise(record);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
  }
  const { request, response } = record;
  const flat = { ...record, request: { ...request, ...flattened(request) }, response: { ...response, ...flattened(response) } };
  return { ...serialise(flat), bodiesAsText: true };
}
