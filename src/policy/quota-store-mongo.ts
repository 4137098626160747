/**
 * The shared counters in MongoDB: the `quotas` collection, one document per subject and window
 * start (`institution:acme|day|2026-12-07`) with `requests`, `tokens`, `costUsd` and `expireAt`
 * (the window's end, TTL-indexed with expireAfterSeconds 0, so ended windows go away by themselves).
 *
 * Only what DocumentDB, Cosmos DB and FerretDB also support (issue 14): findOneAndUpdate and
 * updateOne with upsert, $inc and $setOnInsert, equality and $lt filters; no pipeline updates,
 * $expr or transactions. A reservation is one findOneAndUpdate whose filter carries each limit as
 * `{kind: {$lt: limit}}`: the server applies filter and $inc atomically, so processes sharing the
 * database never admit one more than the limit.
 */
import { MongoClient, MongoServerError } from 'mongodb';
import type { Collection } from 'mongodb';
import type { Usage } from './limits-counters.ts';
import type { Check, QuotaStore, Reservation } from './quota-store.ts';

interface WindowDoc {
  _id: string;
  requests: number;
  tokens: number;
  costUsd: number;
  expireAt: Date;
}

export interface MongoQuotaStoreOptions {
  uri: string;
  db: string;
  /** Bounds server selection and each command on the server (maxTimeMS). */
  timeoutMs: number;
}

const DUPLICATE_KEY = 11000;
const KINDS = ['requests', 'tokens', 'costUsd'] as const;

export class MongoQuotaStore implements QuotaStore {
  readonly #client: MongoClient;
  readonly #quotas: Collection<WindowDoc>;
  readonly #maxTimeMS: number;
  #indexed: Promise<void> | null = null;

  constructor(options: MongoQuotaStoreOptions) {
    this.#client = new MongoClient(options.uri, {
      serverSelectionTimeoutMS: options.timeoutMs,
      // The monitor notices a server back within a second, so admission does not wait for it.
      heartbeatFrequencyMS: 1000,
      appName: 'openai-api-proxy quotas',
    });
    this.#quotas = this.#client.db(databaseName(this.#client, options.uri, options.db)).collection<WindowDoc>('quotas');
    this.#maxTimeMS = options.timeoutMs;
  }

  /**
   * The TTL index, created beside the first write (never in its way) and again after a failure, so
   * that a limit added by a reload, or a database down at start, still gets its windows expired.
   * The store works before it exists.
   */
  ensureIndexes(): Promise<void> {
    this.#indexed ??= this.#quotas.createIndex({ expireAt: 1 }, { name: 'expireAt_ttl', expireAfterSeconds: 0 }).then(
      () => undefined,
      (err: unknown) => {
        this.#indexed = null;
        throw err;
      },
    );
    return this.#indexed;
  }

  #indexLater(): void {
    if (this.#indexed === null) this.ensureIndexes().catch(() => undefined);
  }

  async reserve(id: string, expireAt: Date, checks: readonly Check[]): Promise<Reservation> {
    this.#indexLater();
    const filter: Record<string, unknown> = { _id: id };
    for (const check of checks) filter[check.kind] = { $lt: check.limit };
    const options = { returnDocument: 'after', maxTimeMS: this.#maxTimeMS } as const;
    try {
      const doc = await this.#quotas.findOneAndUpdate(filter, { $inc: { requests: 1 }, $setOnInsert: { tokens: 0, costUsd: 0, expireAt } }, { ...options, upsert: true });
      if (doc !== null) return { admitted: true, counts: countsOf(doc) };
    } catch (err) {
      // The filter failed and the upsert met an existing _id: either the window is full, or
      // another process created it between our match and our insert. Once more without upsert tells which.
      if (!(err instanceof MongoServerError && err.code === DUPLICATE_KEY)) throw err;
    }
    const doc = await this.#quotas.findOneAndUpdate(filter, { $inc: { requests: 1 } }, options);
    if (doc !== null) return { admitted: true, counts: countsOf(doc) };
    // Refused: the totals name the limit in the 429 (a refusal only, never an admission, pays this).
    const full = await this.#quotas.findOne({ _id: id }, { maxTimeMS: this.#maxTimeMS });
    return { admitted: false, counts: full === null ? null : countsOf(full) };
  }

  async add(id: string, expireAt: Date, usage: Usage): Promise<void> {
    this.#indexLater();
    const inc: Partial<Record<(typeof KINDS)[number], number>> = {};
    const onInsert: Record<string, unknown> = { expireAt };
    // A field is either incremented or initialised: mongod refuses both on one path.
    for (const kind of KINDS) {
      if (usage[kind] !== 0) inc[kind] = usage[kind];
      else onInsert[kind] = 0;
    }
    await this.#quotas.updateOne({ _id: id }, { $inc: inc, $setOnInsert: onInsert }, { upsert: true, maxTimeMS: this.#maxTimeMS });
  }

  async close(): Promise<void> {
    await this.#client.close();
  }
}

/** The URI's database when it names one, else `fallback` (MONGODB_DB), as the shipper picks it (audit/shipper/shipper-mongo.ts). */
function databaseName(client: MongoClient, uri: string, fallback: string): string {
  const parsed = client.options.dbName;
  // The driver answers 'test' both for no path and for /test: only the second means it.
  if (parsed !== 'test') return parsed;
  return /^[^:]+:\/\/[^/]*\/test(?:\?|$)/.test(uri) ? parsed : fallback;
}

function countsOf(doc: WindowDoc): Usage {
  return { requests: Number(doc.requests ?? 0), tokens: Number(doc.tokens ?? 0), costUsd: Number(doc.costUsd ?? 0) };
}
