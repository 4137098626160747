/**
 * The segment being written: numbering after recovery, whole-batch appends, fsync bookkeeping,
 * rotation at line boundaries, and cutting a failed batch back off.
 */
import { open, stat, truncate, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import {
  JournalWriteError,
  cutTornTail,
  listSegments,
  segmentPath,
  segmentSequence,
  syncDirectory,
  writeAll,
} from './journal-segments.ts';

export type FsyncPolicy = 'always' | 'interval' | 'never';

/** The part of the journal's stats this writer keeps up to date. */
export interface WriterCounters {
  fsyncs: number;
  segments: number;
}

interface Segment {
  path: string;
  fh: FileHandle;
  /** Bytes written and counted: where a failed batch is cut back to. */
  size: number;
}

async function openSegment(path: string): Promise<Segment> {
  const fh = await open(path, 'a');
  try {
    return { path, fh, size: (await fh.stat()).size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

export class SegmentWriter {
  #segment: Segment | null = null;
  #nextSequence = 1;
  /** Written since the last fsync. */
  #dirty = false;
  #lastSyncAt = 0;

  constructor(
    private readonly dir: string,
    private readonly segmentBytes: number,
    private readonly policy: FsyncPolicy,
    private readonly counters: WriterCounters,
  ) {}

  get path(): string | null {
    return this.#segment?.path ?? null;
  }

  get dirty(): boolean {
    return this.#dirty && this.#segment !== null;
  }

  get lastSyncAt(): number {
    return this.#lastSyncAt;
  }

  /**
   * After a crash the last segment may end in a partial line: cut it, and number new segments
   * after the last one. Returns the torn bytes cut, if any, and where.
   */
  async recover(): Promise<{ path: string; bytes: number } | null> {
    const segments = await listSegments(this.dir);
    this.counters.segments = segments.length;
    const last = segments.at(-1);
    if (last === undefined) return null;
    this.#nextSequence = segmentSequence(last) + 1;
    const bytes = await cutTornTail(last);
    return bytes > 0 ? { path: last, bytes } : null;
  }

  /** Opens the next segment; new records never go into one written before. */
  async openNext(): Promise<void> {
    const segment = await openSegment(segmentPath(this.dir, this.#nextSequence++));
    if (this.policy !== 'never') await syncDirectory(this.dir);
    this.#segment = segment;
    this.counters.segments++;
  }

  /** Whether `line` must start a new segment: it would take a non-empty one past the limit. */
  mustRotate(line: Buffer): boolean {
    const size = this.#segment?.size ?? 0;
    return size > 0 && size + line.length > this.segmentBytes;
  }

  /** How many of `lines` fit in the segment; at least one, since a record is never split. */
  fitting(lines: readonly Buffer[]): number {
    let bytes = this.#segment?.size ?? 0;
    let count = 0;
    for (const line of lines) {
      if (count > 0 && bytes + line.length > this.segmentBytes) break;
      bytes += line.length;
      count++;
    }
    return count;
  }

  async rotate(): Promise<void> {
    const old = this.#requireSegment();
    if (this.#dirty && this.policy !== 'never') await this.sync();
    await this.openNext();
    // Its data is written (and synced per policy); a failing close loses nothing.
    await old.fh.close().catch(() => undefined);
  }

  /** Appends a batch with one write call; under policy `always` it is fsynced before returning. */
  async write(data: Buffer): Promise<void> {
    const segment = this.#requireSegment();
    await writeAll(segment.fh, data);
    if (this.policy === 'always') await this.sync();
    else this.#dirty = true;
    segment.size += data.length;
  }

  async sync(): Promise<void> {
    await this.#requireSegment().fh.datasync();
    this.counters.fsyncs++;
    this.#dirty = false;
    this.#lastSyncAt = Date.now();
  }

  /**
   * Why the open segment is no longer the file its path names (unlinked, or its directory
   * deleted or moved), or null while it is. No segment open: null.
   */
  async missing(): Promise<string | null> {
    const segment = this.#segment;
    if (!segment) return null;
    const [opened, named] = await Promise.all([
      segment.fh.stat(),
      stat(segment.path).catch((err: unknown) => (err as NodeJS.ErrnoException).code ?? 'stat failed'),
    ]);
    if (opened.nlink === 0) return 'unlinked';
    if (typeof named === 'string') return `${segment.path}: ${named}`;
    return named.ino === opened.ino && named.dev === opened.dev ? null : `${segment.path} is another file`;
  }

  /** Closes a segment that is gone from the directory, leaving what is at its path alone. */
  async abandon(): Promise<void> {
    const segment = this.#segment;
    if (!segment) return;
    this.#segment = null;
    this.#dirty = false;
    this.counters.segments--;
    await segment.fh.close().catch(() => undefined);
  }

  /**
   * Gives up the segment after a failure: cuts a half-written batch off (or removes the file if
   * nothing in it counted) and closes it. The next records go to a new segment.
   */
  async discard(): Promise<void> {
    const segment = this.#segment;
    if (!segment) return;
    this.#segment = null;
    this.#dirty = false;
    await segment.fh.close().catch(() => undefined); // the handle has failed already
    if (segment.size > 0) {
      await truncate(segment.path, segment.size);
    } else {
      await unlink(segment.path);
      this.counters.segments--;
    }
  }

  async close(): Promise<void> {
    const segment = this.#segment;
    if (!segment) return;
    this.#segment = null;
    try {
      await segment.fh.datasync();
      this.counters.fsyncs++;
    } finally {
      await segment.fh.close();
    }
  }

  #requireSegment(): Segment {
    if (!this.#segment) throw new JournalWriteError('no segment is open');
    return this.#segment;
  }
}
