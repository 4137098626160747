/**
 * The local write-ahead audit journal: one relaxed Extended JSON line per record, group commit,
 * size-rotated segments, crash recovery, retention, and survival of a full or unwritable disk.
 */
import { mkdir, open, truncate, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { recordLine } from './journal-line.ts';
import {
  cutTornTail,
  enforceRetention,
  listSegments,
  probeDirectory,
  segmentPath,
  segmentSequence,
  syncDirectory,
  writeAll,
} from './journal-segments.ts';
import type { RetentionPolicy } from './journal-segments.ts';
import { ErrorLog } from './journal-log.ts';
import type { AuditRecord } from './record.ts';

export { JournalSegmentNameError, JournalWriteError, listSegments, segmentSequence } from './journal-segments.ts';

export type FsyncPolicy = 'always' | 'interval' | 'never';

export interface JournalOptions {
  dir: string;
  /** A segment is rotated before the line that would take it past this size. */
  segmentBytes: number;
  fsync: FsyncPolicy;
  fsyncIntervalMs?: number;
  retentionDays?: number | null;
  retentionBytes?: number | null;
  /** Whether a segment may be deleted (the shipper has shipped it); default: always. */
  canDelete?: (segmentPath: string) => boolean;
  log?: (msg: string) => void;
}

export interface JournalStats {
  /** Records offered to `append`. */
  appended: number;
  /** Bytes of the lines accepted for writing. */
  appendedBytes: number;
  /** Records written (and fsynced under policy `always`). */
  committed: number;
  /** Records lost: unwritable journal, unserializable record, or write queue full. */
  dropped: number;
  tornLinesSkipped: number;
  /** Segment files in the directory. */
  segments: number;
  lastCommitAt: number | null;
  /** Committed batches: one write call each. */
  batches: number;
  fsyncs: number;
  /** Records some of whose user keys had to be escaped (see journal-line.ts). */
  escaped: number;
}

interface Segment {
  path: string;
  fh: FileHandle;
  /** Bytes written and counted: where a failed batch is cut back to. */
  size: number;
}

interface FlushWaiter {
  target: number;
  resolve: () => void;
}

const PROBE_INTERVAL_MS = 1000;
const RETENTION_INTERVAL_MS = 3_600_000;
/** Past this much unwritten data (a stalled disk) new records are dropped rather than held. */
const MAX_PENDING_BYTES = 128 * 1024 * 1024;

export class Journal {
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #policy: FsyncPolicy;
  readonly #fsyncIntervalMs: number;
  readonly #retention: RetentionPolicy;
  readonly #log: ErrorLog;
  readonly #stats: JournalStats = {
    appended: 0, appendedBytes: 0, committed: 0, dropped: 0, tornLinesSkipped: 0,
    segments: 0, lastCommitAt: null, batches: 0, fsyncs: 0, escaped: 0,
  };

  #segment: Segment | null = null;
  #nextSequence = 1;
  #recovered = false;
  #writable = false;
  #closing: Promise<void> | null = null;

  #queue: Buffer[] = [];
  #pendingBytes = 0;
  /** Records queued, and queued records written or dropped: flush waits for the second to catch up. */
  #queued = 0;
  #settled = 0;
  #running = false;
  #flushWaiters: FlushWaiter[] = [];

  #dirty = false;
  #syncRequested = false;
  #lastSyncAt = 0;
  #syncTimer: NodeJS.Timeout | null = null;
  #probeTimer: NodeJS.Timeout | null = null;
  #retentionTimer: NodeJS.Timeout | null = null;
  #probing: Promise<void> | null = null;
  #retaining: Promise<void> | null = null;

  #unwritableSince: number | null = null;
  readonly #commitListeners = new Set<() => void>();
  readonly #writableListeners = new Set<(writable: boolean) => void>();

  private constructor(opts: JournalOptions) {
    this.#dir = opts.dir;
    this.#segmentBytes = opts.segmentBytes;
    this.#policy = opts.fsync;
    this.#fsyncIntervalMs = opts.fsyncIntervalMs ?? 100;
    this.#retention = {
      retentionDays: opts.retentionDays ?? null,
      retentionBytes: opts.retentionBytes ?? null,
      canDelete: opts.canDelete ?? (() => true),
    };
    this.#log = new ErrorLog(`audit journal (${opts.dir})`, opts.log ?? ((msg) => console.warn(msg)));
  }

  /**
   * Creates `dir`, recovers its last segment and opens a new one. Never throws for a directory
   * that cannot be written: the journal then starts unwritable and keeps probing.
   */
  static async open(opts: JournalOptions): Promise<Journal> {
    const journal = new Journal(opts);
    await journal.#probe();
    await journal.#retaining;
    if (journal.#retention.retentionDays !== null || journal.#retention.retentionBytes !== null) {
      journal.#retentionTimer = setInterval(() => journal.#retain(), RETENTION_INTERVAL_MS).unref();
    }
    return journal;
  }

  get writable(): boolean {
    return this.#writable;
  }

  /** The segment being written, which the shipper must read only up to its last full line. */
  get activeSegment(): string | null {
    return this.#segment?.path ?? null;
  }

  get stats(): Readonly<JournalStats> {
    return { ...this.#stats };
  }

  /** Fired after each committed batch. Returns a function that removes the listener. */
  onCommit(listener: () => void): () => void {
    this.#commitListeners.add(listener);
    return () => this.#commitListeners.delete(listener);
  }

  onWritableChange(listener: (writable: boolean) => void): () => void {
    this.#writableListeners.add(listener);
    return () => this.#writableListeners.delete(listener);
  }

  /** Queues the record for the next batch. Never throws and never waits for the disk. */
  append(record: AuditRecord): void {
    this.#stats.appended++;
    if (!this.#writable || this.#closing !== null) {
      this.#stats.dropped++;
      return;
    }
    let line: Buffer;
    try {
      const serialized = recordLine(record);
      if (serialized.escaped) this.#stats.escaped++;
      line = Buffer.from(`${serialized.line}\n`);
    } catch (err) {
      this.#stats.dropped++;
      this.#log.error('a record could not be serialized', err);
      return;
    }
    if (this.#pendingBytes + line.length > MAX_PENDING_BYTES) {
      this.#stats.dropped++;
      this.#log.error('write queue full', new Error(`${this.#pendingBytes} bytes not yet written`));
      return;
    }
    this.#stats.appendedBytes += line.length;
    this.#queue.push(line);
    this.#pendingBytes += line.length;
    this.#queued++;
    this.#kick();
  }

  /** Resolves once everything appended so far is written, and fsynced unless policy `never`. */
  flush(): Promise<void> {
    return new Promise((resolve) => {
      this.#flushWaiters.push({ target: this.#queued, resolve });
      this.#kick();
    });
  }

  /** Flushes, fsyncs and closes. Later appends are dropped. */
  close(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  async #shutDown(): Promise<void> {
    await this.flush();
    for (const timer of [this.#syncTimer, this.#probeTimer, this.#retentionTimer]) clearTimeout(timer ?? undefined);
    await this.#probing;
    await this.#retaining;
    this.#commitListeners.clear();
    this.#writableListeners.clear();
    this.#writable = false;
    const segment = this.#segment;
    this.#segment = null;
    if (!segment) return;
    try {
      await segment.fh.datasync();
      this.#stats.fsyncs++;
    } catch (err) {
      this.#log.error('final fsync failed', err);
    }
    await segment.fh.close().catch((err: unknown) => this.#log.error('closing the segment failed', err));
  }

  // --- the writer: one loop at a time, batches what accumulated while the last write ran ---

  #kick(): void {
    if (this.#running) return;
    this.#running = true;
    // Deferred so that the appends of this turn of the event loop share the first batch.
    setImmediate(() => void this.#drain());
  }

  async #drain(): Promise<void> {
    try {
      for (;;) {
        if (this.#syncDue()) await this.#sync();
        else if (this.#queue.length > 0) await this.#writeBatch();
        else break;
        this.#settleFlushes();
      }
    } catch (err) {
      // Not expected (every step handles its own errors), but the proxy must outlive it.
      this.#log.error('writer failed', err);
    } finally {
      this.#running = false;
      this.#settleFlushes();
    }
  }

  #syncDue(): boolean {
    if (!this.#dirty || this.#segment === null) return false;
    if (this.#syncRequested) return true;
    return this.#policy !== 'never' && this.#flushWaiters.some((waiter) => waiter.target <= this.#settled);
  }

  #settleFlushes(): void {
    const durable = this.#policy === 'never' || !this.#dirty || this.#segment === null;
    this.#flushWaiters = this.#flushWaiters.filter((waiter) => {
      if (!durable || waiter.target > this.#settled) return true;
      waiter.resolve();
      return false;
    });
  }

  async #writeBatch(): Promise<void> {
    const segment = this.#segment;
    if (!segment || !this.#writable) {
      this.#drop(this.#takeLines(this.#queue.length));
      return;
    }
    let lines: Buffer[] = [];
    try {
      const active = this.#mustRotate(segment) ? await this.#rotate(segment) : segment;
      lines = this.#takeLines(this.#fitting(active));
      const data = Buffer.concat(lines);
      await writeAll(active.fh, data);
      if (this.#policy === 'always') await this.#datasync(active.fh);
      else this.#dirty = true;
      active.size += data.length;
      this.#commit(lines.length);
    } catch (err) {
      await this.#fail(err, lines);
    }
  }

  #mustRotate(segment: Segment): boolean {
    const next = this.#queue[0];
    return next !== undefined && segment.size > 0 && segment.size + next.length > this.#segmentBytes;
  }

  /** How many queued lines fit in the segment; at least one (a record is never split). */
  #fitting(segment: Segment): number {
    let bytes = segment.size;
    let count = 0;
    for (const line of this.#queue) {
      if (count > 0 && bytes + line.length > this.#segmentBytes) break;
      bytes += line.length;
      count++;
    }
    return count;
  }

  #takeLines(count: number): Buffer[] {
    const lines = this.#queue.splice(0, count);
    for (const line of lines) this.#pendingBytes -= line.length;
    return lines;
  }

  #commit(count: number): void {
    this.#settled += count;
    this.#stats.committed += count;
    this.#stats.batches++;
    this.#stats.lastCommitAt = Date.now();
    if (this.#policy === 'interval') this.#armSyncTimer();
    for (const listener of this.#commitListeners) this.#call(() => listener());
  }

  #drop(lines: Buffer[]): void {
    this.#settled += lines.length;
    this.#stats.dropped += lines.length;
  }

  // --- durability ---

  async #datasync(fh: FileHandle): Promise<void> {
    await fh.datasync();
    this.#stats.fsyncs++;
    this.#dirty = false;
    this.#syncRequested = false;
    this.#lastSyncAt = Date.now();
  }

  async #sync(): Promise<void> {
    const segment = this.#segment;
    if (!segment) return;
    try {
      await this.#datasync(segment.fh);
    } catch (err) {
      // The batches since the last fsync were counted committed; they may or may not be on disk.
      await this.#fail(err, []);
    }
  }

  /** Policy `interval`: at most one fsync per interval, and one soon after the last write. */
  #armSyncTimer(): void {
    if (this.#syncTimer) return;
    const delay = Math.max(0, this.#lastSyncAt + this.#fsyncIntervalMs - Date.now());
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = null;
      this.#syncRequested = true;
      this.#kick();
    }, delay).unref();
  }

  // --- segments ---

  async #openSegment(): Promise<Segment> {
    const path = segmentPath(this.#dir, this.#nextSequence++);
    const fh = await open(path, 'a');
    const size = await fh.stat().then(
      (info) => info.size,
      async (err: unknown) => {
        await fh.close();
        throw err;
      },
    );
    const segment = { path, fh, size };
    if (this.#policy !== 'never') await syncDirectory(this.#dir);
    this.#segment = segment;
    this.#stats.segments++;
    this.#retain();
    return segment;
  }

  async #rotate(old: Segment): Promise<Segment> {
    if (this.#dirty && this.#policy !== 'never') await this.#datasync(old.fh);
    const next = await this.#openSegment();
    await old.fh.close().catch((err: unknown) => this.#log.error('closing a full segment failed', err));
    return next;
  }

  /** Recovery on open: cut the torn tail of the last segment and continue its numbering. */
  async #recover(): Promise<void> {
    const segments = await listSegments(this.#dir);
    const last = segments.at(-1);
    if (last !== undefined) {
      const cut = await cutTornTail(last);
      if (cut > 0) {
        this.#stats.tornLinesSkipped++;
        this.#log.info(`cut a torn last line (${cut} bytes) left by a crash from ${last}`);
      }
      this.#nextSequence = segmentSequence(last) + 1;
    }
    this.#stats.segments = segments.length;
    this.#recovered = true;
  }

  #retain(): void {
    this.#retaining ??= enforceRetention(this.#dir, this.#retention, this.activeSegment)
      .then((deleted) => {
        this.#stats.segments -= deleted.length;
      })
      .catch((err: unknown) => this.#log.error('retention failed', err))
      .finally(() => {
        this.#retaining = null;
      });
  }

  // --- failure and recovery ---

  /** A failed write or fsync: count the batch as dropped, give up the segment, and probe. */
  async #fail(err: unknown, lines: Buffer[]): Promise<void> {
    this.#drop(lines);
    this.#log.error('write failed, records are being dropped', err);
    this.#setWritable(false);
    await this.#discardSegment();
    this.#probeTimer ??= setInterval(() => void this.#probe(), PROBE_INTERVAL_MS).unref();
  }

  /** Cuts a half-written batch off the segment (or removes it if empty) and closes it. */
  async #discardSegment(): Promise<void> {
    const segment = this.#segment;
    if (!segment) return;
    this.#segment = null;
    this.#dirty = false;
    await segment.fh.close().catch(() => undefined); // the handle failed already
    try {
      if (segment.size > 0) await truncate(segment.path, segment.size);
      else {
        await unlink(segment.path);
        this.#stats.segments--;
      }
    } catch (err) {
      this.#log.error(`could not clean up ${segment.path}`, err);
    }
  }

  #probe(): Promise<void> {
    this.#probing ??= this.#tryToResume().finally(() => {
      this.#probing = null;
    });
    return this.#probing;
  }

  async #tryToResume(): Promise<void> {
    if (this.#closing !== null) return;
    try {
      await mkdir(this.#dir, { recursive: true });
      if (!this.#recovered) await this.#recover();
      await probeDirectory(this.#dir);
      await this.#openSegment();
    } catch (err) {
      this.#log.error('cannot write to the journal directory', err);
      this.#setWritable(false);
      this.#probeTimer ??= setInterval(() => void this.#probe(), PROBE_INTERVAL_MS).unref();
      return;
    }
    clearInterval(this.#probeTimer ?? undefined);
    this.#probeTimer = null;
    this.#setWritable(true);
  }

  #setWritable(writable: boolean): void {
    if (!writable) this.#unwritableSince ??= Date.now();
    else if (this.#unwritableSince !== null) {
      const seconds = ((Date.now() - this.#unwritableSince) / 1000).toFixed(1);
      this.#log.info(`writable again after ${seconds} s, writing ${this.activeSegment}`);
      this.#unwritableSince = null;
    }
    if (writable === this.#writable) return;
    this.#writable = writable;
    for (const listener of this.#writableListeners) this.#call(() => listener(writable));
  }

  #call(listener: () => void): void {
    try {
      listener();
    } catch (err) {
      this.#log.error('a listener threw', err);
    }
  }
}
