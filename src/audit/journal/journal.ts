/**
 * The local write-ahead audit journal: one relaxed Extended JSON line per record, group commit,
 * size-rotated segments, crash recovery, retention, backpressure towards the recorder, and
 * survival of a full or unwritable disk or of its directory being deleted.
 */
import { mkdir } from 'node:fs/promises';
import { log } from '../../log.ts';
import { UNBOUNDED, type MemoryAccount } from '../../memory-budget.ts';
import { recordLine } from './journal-line.ts';
import { JournalLog } from './journal-log.ts';
import { enforceRetention, probeDirectory } from './journal-segments.ts';
import type { RetentionPolicy } from './journal-segments.ts';
import { SegmentWriter } from './journal-writer.ts';
import type { FsyncPolicy } from './journal-writer.ts';
import type { AuditRecord } from '../record/record.ts';

export { JournalSegmentNameError, JournalWriteError, listSegments, segmentSequence } from './journal-segments.ts';
export type { FsyncPolicy } from './journal-writer.ts';

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
  /** Past this many bytes not yet written, `needsDrain` asks writers to wait (default 16 MiB). */
  highWaterBytes?: number;
  /** Where the lines not yet written are counted (MEMORY_BUDGET_BYTES). */
  memory?: MemoryAccount;
  /** How often the segment being written is checked to still be in the directory (default 1 s). */
  checkIntervalMs?: number;
}

export interface JournalStats {
  /** Records offered to `append`. */
  appended: number;
  /** Bytes of the lines accepted for writing. */
  appendedBytes: number;
  /** Records written (and fsynced under policy `always`). */
  committed: number;
  /** Records lost: unwritable journal, unserializable record, or write queue full (a stalled disk). */
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
  /** Records nested too deep, written with their JSON bodies as text (see journal-line.ts). */
  bodiesAsText: number;
  /**
   * Times the segment being written was found gone from the directory (the directory deleted
   * or moved) and a new one opened in the directory made again.
   */
  reopened: number;
  /** Bytes of the lines not yet written. */
  pendingBytes: number;
}

interface FlushWaiter {
  target: number;
  resolve: () => void;
}

const PROBE_INTERVAL_MS = 1000;
const RETENTION_INTERVAL_MS = 3_600_000;
/**
 * Past this much unwritten data new records are dropped rather than held: reached only by a disk
 * that stalls (neither writes nor fails) or by writers that ignore `needsDrain`.
 */
const MAX_PENDING_BYTES = 128 * 1024 * 1024;
const HIGH_WATER_BYTES = 16 * 1024 * 1024;

/** Lines are encoded into slabs of this size; a longer line gets a buffer of its own. */
const SLAB_BYTES = 256 * 1024;
const NEWLINE = Buffer.from('\n');

/**
 * Encodes record lines into shared slabs, each line a view of its slab. Buffer.from would count
 * the bytes of the text first (a second pass over the line) and allocate for every line; here the
 * room is bounded instead (3 bytes per UTF-16 unit at most). A slab is kept alive by its lines
 * until they are written.
 */
class LineEncoder {
  #slab = Buffer.allocUnsafe(SLAB_BYTES);
  #used = 0;

  /** The line's pieces and its newline, in UTF-8. */
  encode(pieces: readonly (string | Buffer)[]): Buffer {
    let room = 1;
    for (const piece of pieces) room += typeof piece === 'string' ? piece.length * 3 : piece.length;
    if (room > SLAB_BYTES) return Buffer.concat([...pieces.map((piece) => (typeof piece === 'string' ? Buffer.from(piece) : piece)), NEWLINE]);
    if (this.#used + room > SLAB_BYTES) {
      this.#slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.#used = 0;
    }
    const start = this.#used;
    let end = start;
    for (const piece of pieces) end += typeof piece === 'string' ? this.#slab.write(piece, end) : piece.copy(this.#slab, end);
    this.#slab[end] = 0x0a;
    this.#used = end + 1;
    return this.#slab.subarray(start, this.#used);
  }
}

function byteLength(lines: readonly Buffer[]): number {
  let bytes = 0;
  for (const line of lines) bytes += line.length;
  return bytes;
}

export class Journal {
  readonly #dir: string;
  readonly #policy: FsyncPolicy;
  readonly #fsyncIntervalMs: number;
  readonly #retention: RetentionPolicy;
  readonly #log: JournalLog;
  readonly #writer: SegmentWriter;
  readonly #encoder = new LineEncoder();
  readonly #highWater: number;
  readonly #memory: MemoryAccount;
  readonly #checkIntervalMs: number;
  readonly #stats: JournalStats = {
    appended: 0, appendedBytes: 0, committed: 0, dropped: 0, tornLinesSkipped: 0,
    segments: 0, lastCommitAt: null, batches: 0, fsyncs: 0, escaped: 0, bodiesAsText: 0, reopened: 0, pendingBytes: 0,
  };

  #recovered = false;
  #writable = false;
  #closing: Promise<void> | null = null;

  #queue: Buffer[] = [];
  /** Bytes of the lines queued, and of those taken into the batch being written. */
  #pendingBytes = 0;
  #writingBytes = 0;
  /** Records queued, and queued records written or dropped: flush waits for the second to catch up. */
  #queued = 0;
  #settled = 0;
  #running = false;
  #loop: Promise<void> = Promise.resolve();
  #flushWaiters: FlushWaiter[] = [];
  #drainWaiters: (() => void)[] = [];

  #syncRequested = false;
  #syncTimer: NodeJS.Timeout | null = null;
  #probeTimer: NodeJS.Timeout | null = null;
  #retentionTimer: NodeJS.Timeout | null = null;
  #probing: Promise<void> | null = null;
  #retaining: Promise<void> | null = null;
  #checkTimer: NodeJS.Timeout | null = null;
  #checkRequested = false;
  /** Records committed since the segment was last seen in its directory. */
  #committedSinceCheck = 0;

  #unwritableSince: number | null = null;
  readonly #commitListeners = new Set<() => void>();
  readonly #writableListeners = new Set<(writable: boolean) => void>();

  private constructor(opts: JournalOptions) {
    this.#dir = opts.dir;
    this.#policy = opts.fsync;
    this.#writer = new SegmentWriter(opts.dir, opts.segmentBytes, opts.fsync, this.#stats);
    this.#fsyncIntervalMs = opts.fsyncIntervalMs ?? 100;
    this.#highWater = opts.highWaterBytes ?? HIGH_WATER_BYTES;
    this.#memory = opts.memory ?? UNBOUNDED;
    this.#checkIntervalMs = opts.checkIntervalMs ?? PROBE_INTERVAL_MS;
    this.#retention = {
      retentionDays: opts.retentionDays ?? null,
      retentionBytes: opts.retentionBytes ?? null,
      canDelete: opts.canDelete ?? (() => true),
    };
    this.#log = new JournalLog(`audit journal (${opts.dir})`, opts.log ?? ((msg) => log.warn(msg)));
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
    journal.#checkTimer = setInterval(() => journal.#requestCheck(), journal.#checkIntervalMs).unref();
    return journal;
  }

  get writable(): boolean {
    return this.#writable;
  }

  /** The segment being written, which the shipper must read only up to its last full line. */
  get activeSegment(): string | null {
    return this.#writer.path;
  }

  get stats(): Readonly<JournalStats> {
    return { ...this.#stats, pendingBytes: this.#unwritten() };
  }

  /**
   * More lines than the high-water mark wait to be written: a writer that can wait (the recorder)
   * should, until `drained()`, so that records are taken at the disk's speed instead of dropped.
   */
  get needsDrain(): boolean {
    return this.#unwritten() > this.#highWater && this.#writable && this.#closing === null;
  }

  /**
   * Resolves once half the high-water mark is left to write, or at once when waiting would not
   * help (the journal cannot write or is closing: appends are dropped, counted, either way).
   */
  drained(): Promise<void> {
    if (!this.needsDrain) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
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

  /**
   * Queues the record for the next batch. Never throws and never waits for the disk; a writer
   * that can wait heeds `needsDrain`.
   */
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
      if (serialized.bodiesAsText) this.#stats.bodiesAsText++;
      line = this.#encoder.encode(serialized.pieces);
    } catch (err) {
      this.#stats.dropped++;
      this.#log.error('a record could not be serialized', err);
      return;
    }
    if (this.#unwritten() + line.length > MAX_PENDING_BYTES) {
      this.#stats.dropped++;
      const msg = `write queue full (${this.#unwritten()} bytes not yet written), records are being dropped`;
      this.#log.limited('queue', msg);
      return;
    }
    this.#stats.appendedBytes += line.length;
    this.#queue.push(line);
    this.#pendingBytes += line.length;
    // Never refused: a record is not dropped while the disk writes. Counting it makes the
    // capture of new bodies give way instead.
    this.#memory.reserve(line.length);
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
    this.#wakeDrainWaiters();
    await this.flush();
    for (const timer of [this.#syncTimer, this.#probeTimer, this.#retentionTimer, this.#checkTimer]) clearTimeout(timer ?? undefined);
    await this.#probing;
    await this.#retaining;
    await this.#loop;
    this.#commitListeners.clear();
    this.#writableListeners.clear();
    this.#writable = false;
    await this.#writer.close().catch((err: unknown) => this.#log.error('closing the segment failed', err));
  }

  // --- the writer loop: one at a time, each batch takes what accumulated during the last write ---

  #kick(): void {
    if (this.#running) return;
    this.#running = true;
    // Deferred so that the appends of this turn of the event loop share the first batch.
    this.#loop = new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.#drain());
  }

  async #drain(): Promise<void> {
    try {
      for (;;) {
        if (this.#checkRequested) await this.#checkSegment();
        else if (this.#syncDue()) await this.#sync();
        else if (this.#queue.length > 0) await this.#writeBatch();
        else break;
        this.#settleFlushes();
      }
    } catch (err) {
      // Not expected (each step handles its own errors), but the proxy must outlive it.
      this.#log.error('writer failed', err);
    } finally {
      this.#running = false;
      this.#settleFlushes();
    }
  }

  #syncDue(): boolean {
    if (!this.#writer.dirty) return false;
    if (this.#syncRequested) return true;
    return this.#policy !== 'never' && this.#flushWaiters.some((waiter) => waiter.target <= this.#settled);
  }

  #settleFlushes(): void {
    const durable = this.#policy === 'never' || !this.#writer.dirty;
    this.#flushWaiters = this.#flushWaiters.filter((waiter) => {
      if (!durable || waiter.target > this.#settled) return true;
      waiter.resolve();
      return false;
    });
  }

  async #writeBatch(): Promise<void> {
    const head = this.#queue[0];
    if (!this.#writable || head === undefined) {
      const lines = this.#takeLines(this.#queue.length);
      this.#drop(lines);
      this.#landed(lines);
      return;
    }
    let lines: Buffer[] = [];
    try {
      if (this.#writer.mustRotate(head)) await this.#rotate();
      lines = this.#takeLines(this.#writer.fitting(this.#queue));
      await this.#writer.write(Buffer.concat(lines));
      this.#commit(lines.length);
    } catch (err) {
      await this.#fail(err, lines);
    } finally {
      this.#landed(lines);
    }
  }

  #unwritten(): number {
    return this.#pendingBytes + this.#writingBytes;
  }

  #takeLines(count: number): Buffer[] {
    const lines = this.#queue.splice(0, count);
    const bytes = byteLength(lines);
    this.#pendingBytes -= bytes;
    this.#writingBytes += bytes;
    return lines;
  }

  /** Lines written, or dropped: their bytes are no longer held. */
  #landed(lines: Buffer[]): void {
    const bytes = byteLength(lines);
    this.#writingBytes -= bytes;
    this.#memory.release(bytes);
    if (this.#unwritten() <= this.#highWater / 2) this.#wakeDrainWaiters();
  }

  #wakeDrainWaiters(): void {
    if (this.#drainWaiters.length === 0) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const resolve of waiters) resolve();
  }

  #commit(count: number): void {
    this.#settled += count;
    this.#committedSinceCheck += count;
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

  async #sync(): Promise<void> {
    this.#syncRequested = false;
    try {
      await this.#writer.sync();
    } catch (err) {
      // The batches since the last fsync were counted committed; they may or may not be on disk.
      await this.#fail(err, []);
    }
  }

  /** Policy `interval`: at most one fsync per interval, and one soon after the last write. */
  #armSyncTimer(): void {
    // A sync already due covers this write; arming now would measure from the sync before it.
    if (this.#syncTimer || this.#syncRequested) return;
    const delay = Math.max(0, this.#writer.lastSyncAt + this.#fsyncIntervalMs - Date.now());
    this.#syncTimer = setTimeout(() => {
      this.#syncTimer = null;
      this.#syncRequested = true;
      this.#kick();
    }, delay).unref();
  }

  async #rotate(): Promise<void> {
    await this.#writer.rotate();
    this.#retain();
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

  /** Asks the writer loop to check the segment between two batches (it owns the segment). */
  #requestCheck(): void {
    if (!this.#writable || this.#closing !== null) return;
    this.#checkRequested = true;
    this.#kick();
  }

  /**
   * A segment unlinked under the journal (its directory deleted) still takes writes, into a file
   * no one will ever read: the journal would report itself writable while losing everything. Two
   * stats calls tell; then a new segment is opened in the directory, made again.
   */
  async #checkSegment(): Promise<void> {
    this.#checkRequested = false;
    if (!this.#writable) return;
    const missing = await this.#writer.missing();
    const mayBeLost = this.#committedSinceCheck;
    this.#committedSinceCheck = 0;
    if (missing === null) return;
    this.#stats.reopened++;
    const gone = `the segment being written is gone from the directory (${missing}): up to ${mayBeLost} records written since the last check may be lost`;
    try {
      await this.#writer.abandon();
      await mkdir(this.#dir, { recursive: true });
      await this.#writer.recover();
      await probeDirectory(this.#dir);
      await this.#writer.openNext();
    } catch (err) {
      this.#log.limited('missing', `${gone}; no new segment can be opened`);
      await this.#fail(err, []);
      return;
    }
    this.#log.limited('missing', `${gone}; now writing ${this.activeSegment}`);
  }

  /** A failed write or fsync: count the batch as dropped, give up the segment, and probe. */
  async #fail(err: unknown, lines: Buffer[]): Promise<void> {
    this.#drop(lines);
    this.#log.error('write failed, records are being dropped', err);
    this.#setWritable(false);
    await this.#writer.discard().catch((cleanup: unknown) => this.#log.error('cleaning up the segment failed', cleanup));
    this.#startProbing();
  }

  #startProbing(): void {
    if (this.#closing !== null) return;
    this.#probeTimer ??= setInterval(() => void this.#probe(), PROBE_INTERVAL_MS).unref();
  }

  #probe(): Promise<void> {
    this.#probing ??= this.#tryToResume().finally(() => {
      this.#probing = null;
    });
    return this.#probing;
  }

  /** Recovers (first time), proves the directory takes data, and opens a new segment. */
  async #tryToResume(): Promise<void> {
    if (this.#closing !== null) return;
    try {
      await mkdir(this.#dir, { recursive: true });
      if (!this.#recovered) await this.#recover();
      await probeDirectory(this.#dir);
      await this.#writer.openNext();
    } catch (err) {
      this.#log.error('cannot write to the journal directory', err);
      this.#setWritable(false);
      this.#startProbing();
      return;
    }
    clearInterval(this.#probeTimer ?? undefined);
    this.#probeTimer = null;
    this.#setWritable(true);
    this.#retain();
  }

  async #recover(): Promise<void> {
    const torn = await this.#writer.recover();
    this.#recovered = true;
    if (!torn) return;
    this.#stats.tornLinesSkipped++;
    this.#log.info(`cut a torn last line (${torn.bytes} bytes) left by a crash from ${torn.path}`);
  }

  #setWritable(writable: boolean): void {
    // Records would be dropped now, not held: nothing to wait for.
    if (!writable) this.#wakeDrainWaiters();
    if (!writable) this.#unwritableSince ??= Date.now();
    else if (this.#unwritableSince !== null) {
      const seconds = ((Date.now() - this.#unwritableSince) / 1000).toFixed(1);
      this.#log.limited('resumed', `writable again after ${seconds} s, writing ${this.activeSegment}`);
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
