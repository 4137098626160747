/**
 * The shipper's cursor over the journal: the next batch of records after the checkpoint, moving
 * through segments as the journal leaves them, saving the checkpoint and deleting what is shipped.
 */
import { unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Document } from 'bson';
import { every, log } from '../../log.ts';
import { listSegments, segmentSequence } from '../journal/journal.ts';
import { comparePositions, readCheckpoint, startOf, writeCheckpoint } from './shipper-checkpoint.ts';
import type { Position } from './shipper-checkpoint.ts';
import { BacklogCounter, parseRecord, readLines } from './shipper-reader.ts';
import type { LineRead } from './shipper-reader.ts';

export interface Batch {
  docs: Document[];
  /** Lines consumed, skipped ones included. */
  lines: number;
  skipped: number;
  end: Position;
}

export interface CursorOptions {
  dir: string;
  keepShipped: boolean;
  batchSize: number;
  journal: { readonly activeSegment: string | null };
  /** Told of trouble that is logged here but belongs in the shipper's `lastError`. */
  onError: (what: string, err: unknown) => void;
}

const MAX_BATCH_BYTES = 16 * 1024 * 1024;
const LOG_INTERVAL_MS = 10_000;

function describe(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

/** About when the record was journaled: its end (a long stream started minutes before). */
function recordTime(doc: Document | undefined): number | null {
  const at: unknown = doc?.endedAt ?? doc?.startedAt;
  return at instanceof Date ? at.getTime() : null;
}

export class JournalCursor {
  readonly #opts: CursorOptions;
  readonly #backlog = new BacklogCounter();
  #position: Position | null = null;
  #saved: Position | null = null;
  #oldestPendingAt: number | null = null;
  #skippedLines = 0;
  #refreshing: Promise<void> | null = null;

  constructor(opts: CursorOptions) {
    this.#opts = opts;
  }

  /** Journal lines past the position: the records not yet shipped (as of the last refresh). */
  get backlog(): number {
    return this.#backlog.lines;
  }

  /** When the oldest record not yet shipped was journaled; null when caught up. */
  get oldestPendingAt(): number | null {
    return this.#backlog.lines > 0 ? this.#oldestPendingAt : null;
  }

  get skippedLines(): number {
    return this.#skippedLines;
  }

  /** Only segments wholly before the saved checkpoint are shipped. */
  canDelete(segmentPath: string): boolean {
    const saved = this.#saved;
    if (saved === null) return false;
    try {
      return segmentSequence(segmentPath) < saved.seq;
    } catch {
      return false;
    }
  }

  /** Loads the checkpoint; never throws. */
  async restore(): Promise<void> {
    try {
      this.#position = this.#saved = await readCheckpoint(this.#opts.dir);
    } catch (err) {
      // Starting over re-sends what MongoDB already has: duplicates are recognised, nothing is lost.
      log.warn('audit shipper: the checkpoint is unreadable, shipping the journal from its start', { error: describe(err) });
    }
    await this.#deleteShipped();
  }

  /** Counts the lines appended since the last count. */
  refresh(): Promise<void> {
    return this.#backlog.refresh(this.#opts.dir, this.#position);
  }

  /** The same in the background, so the lag stays current while the shipper waits on MongoDB. */
  refreshSoon(): void {
    this.#refreshing ??= this.refresh()
      .catch(() => undefined) // the shipper's next step reads the journal, and reports it
      .finally(() => {
        this.#refreshing = null;
      });
  }

  /** Resolves once no background refresh runs. */
  async settled(): Promise<void> {
    await this.#refreshing;
  }

  /** The next lines as documents; null when caught up. Moves on through finished segments. */
  async next(): Promise<Batch | null> {
    for (;;) {
      const at = this.#position ?? (await this.#firstSegment());
      if (at === null) return this.#caughtUp();
      this.#position = at;
      // Asked before reading: a segment the journal has left gets no more lines, so its EOF is its end.
      const finished = this.#isFinished(at);
      const read = await this.#read(at);
      if (read !== null && read.lines.length > 0) return this.#parse(at, read);
      const end = read === null ? 'gone' : read.size > read.end ? 'torn' : 'done';
      if ((end === 'gone' || finished) && (await this.#moveOn(at, end))) continue;
      return this.#caughtUp();
    }
  }

  /** The batch is in MongoDB: move past it and save the checkpoint. */
  async advance(batch: Batch): Promise<void> {
    this.#position = batch.end;
    this.#backlog.consumed(batch.lines, batch.end);
    this.#skippedLines += batch.skipped;
    await this.save();
  }

  /** Never throws: a checkpoint that cannot be saved now is saved with the next batch. */
  async save(): Promise<void> {
    const at = this.#position;
    if (at === null || (this.#saved !== null && comparePositions(at, this.#saved) === 0)) return;
    try {
      await writeCheckpoint(this.#opts.dir, at);
      this.#saved = at;
    } catch (err) {
      // A restart meanwhile would only re-send from the older checkpoint: duplicates, not loss.
      this.#opts.onError('saving the checkpoint', err);
      every('audit-shipper:checkpoint', LOG_INTERVAL_MS, 'error', 'audit shipper: cannot save the checkpoint', { error: describe(err) });
    }
  }

  #caughtUp(): null {
    this.#oldestPendingAt = null;
    return null;
  }

  async #firstSegment(): Promise<Position | null> {
    const [first] = await listSegments(this.#opts.dir);
    return first === undefined ? null : startOf(first);
  }

  #isFinished(at: Position): boolean {
    const active = this.#opts.journal.activeSegment;
    if (active === null) return true; // closed, or between segments after a failed write
    try {
      return segmentSequence(active) > at.seq;
    } catch {
      return false;
    }
  }

  /** Null when the segment is gone. */
  async #read(at: Position): Promise<LineRead | null> {
    try {
      return await readLines(join(this.#opts.dir, at.segment), at.offset, this.#opts.batchSize, MAX_BATCH_BYTES);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  #parse(at: Position, read: LineRead): Batch {
    const docs: Document[] = [];
    for (const line of read.lines) {
      const doc = parseRecord(line);
      if (doc !== null) docs.push(doc);
    }
    const skipped = read.lines.length - docs.length;
    if (skipped > 0) {
      every('audit-shipper:torn', LOG_INTERVAL_MS, 'warn', 'audit shipper: skipping journal lines that are not records (torn by a crash?)', { segment: at.segment, skipped });
    }
    this.#oldestPendingAt = recordTime(docs[0]) ?? Date.now();
    return { docs, lines: read.lines.length, skipped, end: { ...at, offset: read.end } };
  }

  /** Past a finished (or vanished) segment to the next one, once the journal has started it. */
  async #moveOn(from: Position, end: 'done' | 'torn' | 'gone'): Promise<boolean> {
    const next = (await listSegments(this.#opts.dir)).find((path) => segmentSequence(path) > from.seq);
    if (next === undefined) return false;
    if (end === 'torn') {
      this.#skippedLines++;
      every('audit-shipper:torn-tail', LOG_INTERVAL_MS, 'warn', 'audit shipper: skipped a partial last line (torn by a crash?)', { segment: from.segment });
    } else if (end === 'gone') {
      every('audit-shipper:gone', LOG_INTERVAL_MS, 'error', 'audit shipper: a journal segment was deleted before it was shipped', { segment: from.segment });
    }
    this.#position = startOf(next);
    this.#backlog.consumed(0, this.#position);
    await this.save();
    await this.#deleteShipped();
    return true;
  }

  /** Unless they are kept: segments wholly before the saved checkpoint, never the journal's active one. */
  async #deleteShipped(): Promise<void> {
    if (this.#opts.keepShipped) return;
    try {
      const active = this.#opts.journal.activeSegment;
      for (const path of await listSegments(this.#opts.dir)) {
        if (!this.canDelete(path) || (active !== null && basename(active) === basename(path))) continue;
        await unlink(path).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err; // else the journal's retention was first
        });
      }
    } catch (err) {
      every('audit-shipper:delete', LOG_INTERVAL_MS, 'warn', 'audit shipper: deleting a shipped segment failed', { error: describe(err) });
    }
  }
}
