/**
 * Reading the journal for the shipper: complete lines only (the active segment is still being
 * written), lines parsed to BSON types, and a running count of the lines not yet shipped.
 */
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { EJSON } from 'bson';
import type { Document } from 'bson';
import { listSegments, segmentSequence } from '../journal/journal.ts';
import { comparePositions } from './shipper-checkpoint.ts';
import type { Position } from './shipper-checkpoint.ts';

const NEWLINE = 0x0a;
const READ_CHUNK = 256 * 1024;

export interface LineRead {
  /** Complete lines, without their newline. */
  lines: Buffer[];
  /** The offset just past the last line taken. */
  end: number;
  /** The file's size when it was read: past `end` with no lines taken means a partial last line. */
  size: number;
}

/**
 * Up to `maxLines` complete lines from `offset`, stopping once `maxBytes` are taken (but always
 * taking at least one line, however long). Throws ENOENT for a segment that is gone.
 */
export async function readLines(path: string, offset: number, maxLines: number, maxBytes: number): Promise<LineRead> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const lines: Buffer[] = [];
    let end = offset; // the file offset of `pending[0]`
    let pending = Buffer.alloc(0);
    for (let pos = offset; pos < size && lines.length < maxLines && (lines.length === 0 || end - offset < maxBytes); ) {
      // Grows with a long line, so that a 16 MiB record is not copied over and over.
      const chunk = Buffer.allocUnsafe(Math.min(Math.max(READ_CHUNK, pending.length), size - pos));
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      const data = pending.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([pending, chunk.subarray(0, bytesRead)]);
      let start = 0;
      for (let nl = data.indexOf(NEWLINE); nl !== -1 && lines.length < maxLines; nl = data.indexOf(NEWLINE, start)) {
        lines.push(data.subarray(start, nl));
        start = nl + 1;
      }
      end += start;
      pending = data.subarray(start);
    }
    return { lines, end, size };
  } finally {
    await fh.close();
  }
}

/**
 * One journal line as the document to insert, or null for a line that is not a record (torn by a
 * crash). Strict EJSON: dates become BSON dates and numbers keep the types mongoimport would give.
 * A record without `_id` is refused too: the driver would invent one, and a replay would duplicate it.
 */
export function parseRecord(line: Buffer): Document | null {
  let value: unknown;
  try {
    value = EJSON.parse(line.toString('utf8'), { relaxed: false });
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || '_bsontype' in value) return null;
  const doc = value as Document;
  return doc._id === undefined || doc._id === null ? null : doc;
}

async function countNewlines(path: string, from: number, to: number): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, to - from));
    let count = 0;
    for (let pos = from; pos < to; ) {
      const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, to - pos), pos);
      if (bytesRead === 0) break;
      for (let nl = chunk.indexOf(NEWLINE); nl !== -1 && nl < bytesRead; nl = chunk.indexOf(NEWLINE, nl + 1)) count++;
      pos += bytesRead;
    }
    return count;
  } finally {
    await fh.close();
  }
}

/**
 * Lines in the journal past the shipper's position. Each refresh counts only the bytes appended
 * since the last one, so a long backlog is read once here, not once per batch.
 */
export class BacklogCounter {
  /** Counted up to here. */
  #at: Position | null = null;
  /** Newlines between the shipper's position and `#at`. */
  #lines = 0;

  get lines(): number {
    return this.#lines;
  }

  /** The shipper moved past `count` lines to `to`. */
  consumed(count: number, to: Position): void {
    if (this.#at === null || comparePositions(this.#at, to) < 0) {
      // The shipper read bytes not yet counted (or left the counted segment): count on from it.
      this.#at = to;
      this.#lines = 0;
      return;
    }
    this.#lines = Math.max(0, this.#lines - count);
  }

  /**
   * Counts what was appended since the last refresh; `from` is the shipper's position. Safe to run
   * alongside the shipper and another refresh: a count the shipper overtook meanwhile is dropped.
   */
  async refresh(dir: string, from: Position | null): Promise<void> {
    if (from !== null && (this.#at === null || comparePositions(this.#at, from) < 0)) this.consumed(0, from);
    const start = this.#at;
    let at = start;
    let lines = 0;
    for (const path of await listSegments(dir)) {
      const seq = segmentSequence(path);
      if (start !== null && seq < start.seq) continue;
      const offset = start !== null && seq === start.seq ? start.offset : 0;
      const size = await stat(path).then((info) => info.size, () => null); // gone meanwhile
      if (size === null || size <= offset) continue;
      lines += await countNewlines(path, offset, size);
      at = { segment: basename(path), seq, offset: size };
    }
    if (this.#at !== start) return;
    this.#lines += lines;
    this.#at = at;
  }
}
