// The audit records in AUDIT_DIR as lines (one relaxed-EJSON document each), parsed on demand.
import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

async function segments(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { recursive: true })).filter((name) => name.endsWith('.ndjson')).sort().map((name) => join(dir, name));
  } catch {
    return []; // no directory (yet, or any more)
  }
}

/** The _id of every record, a line at a time (a journal of large bodies need not fit in a string). */
export async function journalIds(dir: string): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const path of await segments(dir)) {
    const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
    for await (const line of lines) {
      const id = recordId(line);
      if (id !== null) ids.add(id);
    }
  }
  return ids;
}

/** Every line of a small journal. */
export async function journalLines(dir: string): Promise<string[]> {
  const lines: string[] = [];
  for (const path of await segments(dir)) {
    const text = await readFile(path, 'utf8').catch(() => '');
    for (const line of text.split('\n')) if (line !== '') lines.push(line);
  }
  return lines;
}

/** The record's _id, read from the start of its line without parsing the rest. */
export function recordId(line: string): string | null {
  return /"_id"\s*:\s*"([^"]+)"/.exec(line.slice(0, 300))?.[1] ?? null;
}

export type AuditRecord = Record<string, unknown>;

export function parseRecord(line: string): AuditRecord | null {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null ? (value as AuditRecord) : null;
  } catch {
    return null;
  }
}

/** A nested member by path (`request.path`), or undefined. */
export function field(record: AuditRecord | null | undefined, path: string): unknown {
  let value: unknown = record;
  for (const key of path.split('.')) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}
