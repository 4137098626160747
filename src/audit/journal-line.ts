/**
 * An audit record as one line of MongoDB relaxed Extended JSON, written by bson's own EJSON
 * so `mongoimport` and `EJSON.parse` read it back; user keys they would misread are escaped.
 */
import { EJSON } from 'bson';
import type { AuditRecord } from './record.ts';

// Why EJSON.stringify and no hand-written writer (~2.2 KiB records, Node 20, µs per record):
// EJSON ~25; JSON.stringify with a Date replacer ~22 (a replacer turns off V8's fast path);
// a shallow copy with the two top-level dates wrapped + JSON.stringify ~13, but exact only
// without nested dates, NaN or undefined, so it needs a checking walk (~5) first. Saving ~10 µs
// an exchange does not pay for a second serializer that must track bson's output.

export interface RecordLine {
  line: string;
  /** Some user keys had to be escaped (see `escapeKeys`). */
  escaped: boolean;
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

/** Cheap pre-check (~3 µs a record) so that only records with such keys take the careful path. */
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

/** Throws only where EJSON.stringify does (a circular structure, a foreign `_bsontype` object). */
export function recordLine(record: AuditRecord): RecordLine {
  const safe = hasRiskyKey(record) ? escapeKeys(record) : record;
  return { line: EJSON.stringify(safe, { relaxed: true }), escaped: safe !== record };
}
