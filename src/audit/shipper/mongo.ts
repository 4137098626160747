/**
 * Ships the audit journal to MongoDB: committed lines from a checkpoint, unordered batch inserts,
 * duplicate `_id`s from a replay counted as shipped (so exactly once), and retries without end.
 */
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BSON } from 'mongodb';
import type { Collection, Document, MongoClient, MongoClientOptions, TopologyDescriptionChangedEvent } from 'mongodb';
import { every, log } from '../../log.ts';
import { JournalCursor } from './shipper-cursor.ts';
import type { Batch } from './shipper-cursor.ts';
import {
  MongoShipperConfigError,
  describeError,
  duplicatesOnly,
  ensureIndexes,
  isDuplicateIdError,
  isRefusal,
  isUnreachable,
  openTarget,
} from './shipper-mongo.ts';

export { CHECKPOINT_FILE } from './shipper-checkpoint.ts';
/** In AUDIT_DIR: records MongoDB refused, one relaxed Extended JSON line each, for mongoimport once fixed. */
export const DEAD_LETTER_FILE = 'dead-letter.ndjson';
export { MongoShipperConfigError } from './shipper-mongo.ts';

interface Stored {
  duplicates: number;
  refused: number;
}

export type ShipperState = 'connecting' | 'shipping' | 'idle' | 'retrying' | 'stopped';

export interface ShipperStats {
  state: ShipperState;
  /** The last MongoDB operation succeeded, and the server has not been lost since. */
  up: boolean;
  /** Records confirmed in MongoDB, `duplicates` (stored by an earlier, failed attempt) included. */
  shipped: number;
  duplicates: number;
  /** Failed attempts (connect, insert, reading the journal), each followed by a retry. */
  retries: number;
  /** Journal lines that are not records: torn by a crash. */
  skippedLines: number;
  /** Records MongoDB refused for what they are (e.g. over 16 MiB), written to DEAD_LETTER_FILE instead. */
  deadLettered: number;
  /** Failed writes to DEAD_LETTER_FILE (e.g. AUDIT_DIR unwritable); each record is kept and written again later. */
  deadLetterFailures: number;
  /** Refused records held in memory until DEAD_LETTER_FILE takes them. */
  deadLetterPending: number;
  /** Journal lines not yet shipped. */
  lagRecords: number;
  /** Age of the oldest record not yet shipped, by its `endedAt` (about when it was journaled). */
  lagSeconds: number;
  lastError: string | null;
  lastShippedAt: string | null;
}

/** What the shipper needs of the journal; `Journal` has it. */
export interface ShipperJournal {
  onCommit(listener: () => void): () => void;
  readonly activeSegment: string | null;
}

export interface MongoShipperOptions {
  uri: string;
  /** The database when the URI names none. */
  db: string;
  collection?: string;
  /** AUDIT_DIR: the journal's segments, and the shipper's checkpoint. */
  dir: string;
  /** With a value, a TTL index on `endedAt`. */
  ttlDays: number | null;
  /** Keep shipped segments (for the journal's retention to delete); else delete them once shipped. */
  keepShipped: boolean;
  batchSize?: number;
  clientOptions?: MongoClientOptions;
  journal: ShipperJournal;
  /** How long stop() lets an insert in flight finish before abandoning it. */
  stopGraceMs?: number;
}

type Wake = 'commit' | 'reconnect' | 'stop';

const APP_NAME = 'openai-proxy-audit-shipper';
const DEFAULT_BATCH_SIZE = 500;
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 10_000;
/** Only a safety net: commits wake the shipper. */
const IDLE_POLL_MS = 5_000;
const INDEX_RETRY_MS = 60_000;
const LOG_INTERVAL_MS = 10_000;
const DEFAULT_STOP_GRACE_MS = 2_000;
/**
 * Refused records held while DEAD_LETTER_FILE cannot be written. Past this, the batch that meets
 * one more refusal is not passed (it is retried, as MongoDB being down is): records are held
 * back in the journal rather than in memory, and none is ever dropped.
 */
const MAX_PENDING_DEAD_LETTERS = 16;
const IDLE_WAKES: ReadonlySet<Wake> = new Set(['commit', 'reconnect', 'stop']);
const RETRY_WAKES: ReadonlySet<Wake> = new Set(['reconnect', 'stop']);

async function settledWithin(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

export class MongoShipper {
  /** `db.collection`, as chosen from the URI and options. */
  readonly namespace: string;
  readonly #ttlDays: number | null;
  readonly #stopGraceMs: number;
  readonly #client: MongoClient;
  readonly #collection: Collection;
  readonly #cursor: JournalCursor;
  readonly #unsubscribe: () => void;
  #running: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | null = null;

  #state: ShipperState = 'connecting';
  #up = false;
  #connected = false;
  #reachable = false;
  readonly #counts = { shipped: 0, duplicates: 0, retries: 0, deadLettered: 0, deadLetterFailures: 0 };
  readonly #deadLetterPath: string;
  /** Refused records the dead-letter file has not taken yet, by `_id`, with why MongoDB refused them. */
  readonly #deadLetterPending = new Map<string, { doc: Document; reason: string }>();
  #lastError: string | null = null;
  #lastShippedAt: string | null = null;
  #failingSince: number | null = null;
  #attempt = 0;

  #batch: Batch | null = null;
  #indexesDue = true;
  #indexRetryAt = 0;
  readonly #woken = new Set<Wake>();
  #waiter: { wakes: ReadonlySet<Wake>; resolve: () => void } | null = null;

  private constructor(opts: MongoShipperOptions) {
    const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new MongoShipperConfigError(`batchSize must be a positive whole number, not ${batchSize}`);
    if (opts.ttlDays !== null && !(opts.ttlDays > 0)) throw new MongoShipperConfigError(`ttlDays must be positive, not ${opts.ttlDays}`);
    const target = openTarget(opts.uri, opts.db, opts.collection ?? 'requests', { appName: APP_NAME, ...opts.clientOptions });
    this.#client = target.client;
    this.#collection = target.collection;
    this.namespace = `${target.db}.${target.collection.collectionName}`;
    this.#ttlDays = opts.ttlDays;
    this.#stopGraceMs = opts.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    this.#deadLetterPath = join(opts.dir, DEAD_LETTER_FILE);
    this.#cursor = new JournalCursor({
      dir: opts.dir, keepShipped: opts.keepShipped, batchSize, journal: opts.journal,
      onError: (what, err) => (this.#lastError = `${what}: ${describeError(err)}`),
    });
    this.#client.on('topologyDescriptionChanged', (event) => this.#onTopology(event));
    this.#unsubscribe = opts.journal.onCommit(() => {
      this.#wake('commit');
      this.#cursor.refreshSoon();
    });
  }

  /**
   * Returns at once and ships in the background; MongoDB being down only delays shipping.
   * Throws MongoShipperConfigError for an unusable URI or option.
   */
  static start(opts: MongoShipperOptions): MongoShipper {
    const shipper = new MongoShipper(opts);
    shipper.#running = shipper.#run();
    return shipper;
  }

  /** For the journal's retention (a bound function): only segments wholly before the saved checkpoint. */
  readonly canDelete = (segmentPath: string): boolean => this.#cursor.canDelete(segmentPath);

  stats(): ShipperStats {
    const oldest = this.#cursor.oldestPendingAt;
    return {
      state: this.#state,
      up: this.#up,
      ...this.#counts,
      deadLetterPending: this.#deadLetterPending.size,
      skippedLines: this.#cursor.skippedLines,
      lagRecords: this.#cursor.backlog,
      lagSeconds: oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000),
      lastError: this.#lastError,
      lastShippedAt: this.#lastShippedAt,
    };
  }

  /** Lets an insert in flight finish (up to the grace), else abandons it: the checkpoint stays behind it. */
  stop(): Promise<void> {
    this.#stopping ??= this.#shutDown();
    return this.#stopping;
  }

  async #shutDown(): Promise<void> {
    this.#unsubscribe();
    this.#wake('stop');
    await settledWithin(this.#running, this.#stopGraceMs);
    await this.#client.close().catch((err: unknown) => log.warn('audit shipper: closing the MongoDB client failed', { error: describeError(err) }));
    await this.#running;
    await this.#cursor.settled();
    await this.#cursor.save();
    await this.#writeDeadLetters();
    for (const [id, { reason }] of this.#deadLetterPending) {
      // The checkpoint is past these: name each one, so that an operator can take it from the journal.
      log.error('audit shipper: a record MongoDB refused could not be written to the dead-letter file before stopping', {
        id, reason, file: this.#deadLetterPath, lastError: this.#lastError,
      });
    }
    this.#state = 'stopped';
  }

  // --- the loop: one step at a time, a batch is retried until it is stored ---

  async #run(): Promise<void> {
    await this.#cursor.restore();
    while (this.#stopping === null) {
      try {
        await this.#step();
      } catch (err) {
        // MongoDB's failures are handled in the step: this is the journal failing to be read.
        this.#failed('reading the journal', err);
        await this.#backoff();
      }
    }
  }

  async #step(): Promise<void> {
    this.#woken.delete('reconnect');
    await this.#cursor.refresh();
    if (this.#batch === null) {
      this.#woken.delete('commit');
      this.#batch = await this.#cursor.next();
    }
    if (this.#stopping !== null) return;
    // Before MongoDB: the file needs no server, and records waiting for it are retried here.
    await this.#writeDeadLetters();
    if (!this.#connected && !(await this.#connect())) {
      await this.#backoff();
      return;
    }
    if (this.#indexesDue && Date.now() >= this.#indexRetryAt) await this.#createIndexes();
    const batch = this.#batch;
    if (batch === null) {
      await this.#idle();
      return;
    }
    const stored = await this.#insert(batch);
    if (stored !== null) {
      await this.#writeDeadLetters();
      await this.#advance(batch, stored);
    }
    else if (this.#stopping === null) await this.#backoff();
  }

  async #connect(): Promise<boolean> {
    try {
      await this.#client.connect();
    } catch (err) {
      this.#up = false;
      if (this.#stopping === null) this.#failed('connecting to MongoDB', err);
      return false;
    }
    this.#connected = true;
    this.#up = true;
    this.#attempt = 0;
    this.#state = 'shipping';
    this.#indexesDue = true;
    log.info('audit shipper: connected to MongoDB', { namespace: this.namespace });
    return true;
  }

  /** Index trouble is reported, never in the way of shipping. */
  async #createIndexes(): Promise<void> {
    try {
      await ensureIndexes(this.#collection, this.#ttlDays);
      this.#indexesDue = false;
      this.#up = true;
    } catch (err) {
      this.#indexRetryAt = Date.now() + INDEX_RETRY_MS;
      if (isUnreachable(err)) this.#up = false;
      if (this.#stopping !== null) return;
      this.#lastError = `creating indexes: ${describeError(err)}`;
      every('audit-shipper:indexes', LOG_INTERVAL_MS, 'warn', 'audit shipper: creating indexes failed, will retry', { error: describeError(err) });
    }
  }

  /** How the batch ended up stored (duplicates, refusals dead-lettered); null when it must be sent again. */
  async #insert(batch: Batch): Promise<Stored | null> {
    if (batch.docs.length === 0) return { duplicates: 0, refused: 0 };
    if (this.#state !== 'retrying') this.#state = 'shipping';
    try {
      await this.#collection.insertMany(batch.docs, { ordered: false });
      return { duplicates: 0, refused: 0 };
    } catch (err) {
      const duplicates = duplicatesOnly(err, batch.docs.length);
      if (duplicates !== null) return { duplicates, refused: 0 };
      if (isRefusal(err)) return this.#insertOneByOne(batch);
      this.#up = false;
      if (this.#stopping === null) this.#failed('inserting into MongoDB', err);
      return null;
    }
  }

  /**
   * A batch MongoDB refuses for its content: each document on its own, and the ones refused go
   * to the dead-letter file, so one bad record never stops the rest from shipping.
   */
  async #insertOneByOne(batch: Batch): Promise<Stored | null> {
    const stored = { duplicates: 0, refused: 0 };
    for (const doc of batch.docs) {
      try {
        await this.#collection.insertOne(doc);
      } catch (err) {
        if (isDuplicateIdError(err)) stored.duplicates++;
        else if (isRefusal(err)) {
          if (!this.#holdForDeadLetter(doc, err)) {
            if (this.#stopping === null) this.#failed('holding refused records for the dead-letter file', new Error(`${MAX_PENDING_DEAD_LETTERS} refused records are waiting for ${this.#deadLetterPath}`));
            return null;
          }
          stored.refused++;
        } else {
          this.#up = false;
          if (this.#stopping === null) this.#failed('inserting into MongoDB', err);
          return null;
        }
      }
    }
    return stored;
  }

  /** Queues a refused record for the dead-letter file; false when too many are waiting already. */
  #holdForDeadLetter(doc: Document, err: unknown): boolean {
    const id = String(doc._id);
    if (!this.#deadLetterPending.has(id) && this.#deadLetterPending.size >= MAX_PENDING_DEAD_LETTERS) return false;
    this.#deadLetterPending.set(id, { doc, reason: describeError(err) });
    return true;
  }

  /**
   * Writes the refused records waiting for the dead-letter file, each counted once it is written.
   * A write that fails is its own failure, logged and counted: the record stays queued for the
   * next step, and shipping the others goes on.
   */
  async #writeDeadLetters(): Promise<void> {
    for (const [id, { doc, reason }] of this.#deadLetterPending) {
      try {
        await appendFile(this.#deadLetterPath, `${BSON.EJSON.stringify(doc, { relaxed: true })}\n`);
      } catch (err) {
        this.#counts.deadLetterFailures++;
        this.#lastError = `writing the dead-letter file: ${describeError(err)}`;
        every('audit-shipper:dead-letter', LOG_INTERVAL_MS, 'error', 'audit shipper: writing a refused record to the dead-letter file failed; it is kept and written again later', {
          id, error: describeError(err), file: this.#deadLetterPath, pending: this.#deadLetterPending.size, failures: this.#counts.deadLetterFailures,
        });
        return;
      }
      this.#deadLetterPending.delete(id);
      this.#counts.deadLettered++;
      log.error('audit shipper: MongoDB refused a record; it is kept in the dead-letter file', { id, error: reason, file: this.#deadLetterPath });
    }
  }

  async #advance(batch: Batch, stored: Stored): Promise<void> {
    this.#batch = null;
    if (batch.docs.length > 0) {
      this.#counts.shipped += batch.docs.length - stored.refused;
      this.#counts.duplicates += stored.duplicates;
      this.#lastShippedAt = new Date().toISOString();
      this.#recovered();
    }
    await this.#cursor.advance(batch);
  }

  #recovered(): void {
    this.#up = true;
    this.#state = 'shipping';
    this.#attempt = 0;
    if (this.#failingSince === null) return;
    const seconds = ((Date.now() - this.#failingSince) / 1000).toFixed(1);
    log.info(`audit shipper: shipping again after ${seconds} s`, { retries: this.#counts.retries, lagRecords: this.#cursor.backlog });
    this.#failingSince = null;
  }

  #failed(what: string, err: unknown): void {
    this.#counts.retries++;
    this.#lastError = `${what}: ${describeError(err)}`;
    this.#failingSince ??= Date.now();
    if (this.#state !== 'connecting') this.#state = 'retrying';
    every(`audit-shipper:${what}`, LOG_INTERVAL_MS, 'warn', `audit shipper: ${what} failed, will retry`, {
      error: describeError(err), retries: this.#counts.retries, lagRecords: this.#cursor.backlog,
    });
  }

  // --- waiting: for commits when idle, for the server (or the backoff) when failing ---

  #onTopology(event: TopologyDescriptionChangedEvent): void {
    const reachable = [...event.newDescription.servers.values()].some((server) => server.isWritable);
    if (reachable === this.#reachable) return;
    this.#reachable = reachable;
    if (!reachable) {
      this.#up = false;
      return;
    }
    // Back, or there for the first time: a restarted server may have lost the indexes.
    this.#indexesDue = true;
    this.#indexRetryAt = 0;
    this.#wake('reconnect');
  }

  async #idle(): Promise<void> {
    this.#state = 'idle';
    const untilIndexes = this.#indexesDue ? this.#indexRetryAt - Date.now() : IDLE_POLL_MS;
    await this.#pause(Math.max(0, Math.min(IDLE_POLL_MS, untilIndexes)), IDLE_WAKES);
  }

  async #backoff(): Promise<void> {
    const ceiling = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.min(this.#attempt++, 16));
    // Jittered, so that proxies sharing one MongoDB do not all come back at the same moment.
    await this.#pause(ceiling / 2 + (Math.random() * ceiling) / 2, RETRY_WAKES);
  }

  #wake(reason: Wake): void {
    this.#woken.add(reason);
    if (this.#waiter?.wakes.has(reason)) this.#waiter.resolve();
  }

  /** Sleeps `ms`, less if woken for one of `wakes` now or since that reason was last cleared. */
  #pause(ms: number, wakes: ReadonlySet<Wake>): Promise<void> {
    if ([...wakes].some((reason) => this.#woken.has(reason))) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiter = null;
        resolve();
      };
      // Unref'd: a shipper waiting for work must not keep the process alive.
      const timer = setTimeout(done, ms).unref();
      this.#waiter = { wakes, resolve: done };
    });
  }
}
