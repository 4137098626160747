/**
 * The shipper's MongoDB side: the client and collection, the indexes, and telling a batch that is
 * stored (some of it by an earlier attempt) from one that must be sent again.
 */
import {
  BSON,
  MongoBulkWriteError,
  MongoClient,
  MongoInvalidArgumentError,
  MongoNetworkError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from 'mongodb';
import type { Collection, IndexDescription, MongoClientOptions, WriteError } from 'mongodb';
import { errorMessage } from '../../log.ts';
import { AppError } from '../../errors.ts';

const DAY_SECONDS = 86_400;
/** What the driver answers for a URI without a database. */
const DRIVER_DEFAULT_DB = 'test';
/** mongod's wording for a clash on the `_id` index (the driver drops keyPattern from bulk errors). */
const DUPLICATE_ID = / index: _id_ /;

/** The query indexes of shared/design/audit-record.md: by time, institution, model and status. */
const QUERY_INDEXES: IndexDescription[] = [
  { key: { startedAt: 1 } },
  { key: { institution: 1, startedAt: 1 } },
  { key: { 'openai.requestModel': 1, startedAt: 1 } },
  { key: { 'response.status': 1 } },
];

export class MongoShipperConfigError extends AppError {
  readonly code = 'audit_shipper_bad_config';
  readonly status = 500;
  override readonly name = 'MongoShipperConfigError';
}

export interface Target {
  client: MongoClient;
  collection: Collection;
  db: string;
}

/**
 * The URI's database when it names one, else `fallback`. The driver parses the URI, but answers
 * 'test' both when the path is empty and when it says /test: only the second means it.
 */
function databaseName(client: MongoClient, uri: string, fallback: string): string {
  const parsed = client.options.dbName;
  if (parsed !== DRIVER_DEFAULT_DB) return parsed;
  // Neither user info nor hosts may hold a raw '/', so the first one after '://' starts the path.
  return /^[^:]+:\/\/[^/]*\/test(?:\?|$)/.test(uri) ? parsed : fallback;
}

/** Builds the client without connecting. Throws MongoShipperConfigError for an unusable URI or name. */
export function openTarget(uri: string, fallbackDb: string, collection: string, options: MongoClientOptions): Target {
  try {
    const client = new MongoClient(uri, options);
    const db = databaseName(client, uri, fallbackDb);
    return { client, collection: client.db(db).collection(collection), db };
  } catch (err) {
    throw new MongoShipperConfigError(`MongoDB URI or names not usable: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Creates the indexes (a no-op when they exist). The TTL index is on `endedAt`, in its own command:
 * `startedAt` already has a plain index, and a TTL conflict (ttlDays changed) must not stop the others.
 */
export async function ensureIndexes(collection: Collection, ttlDays: number | null): Promise<void> {
  await collection.createIndexes(QUERY_INDEXES);
  if (ttlDays !== null) {
    await collection.createIndexes([{ key: { endedAt: 1 }, expireAfterSeconds: Math.round(ttlDays * DAY_SECONDS) }]);
  }
}

const isList = (errors: WriteError | readonly WriteError[]): errors is readonly WriteError[] => Array.isArray(errors);

function writeErrorsOf(err: MongoBulkWriteError): readonly WriteError[] {
  return isList(err.writeErrors) ? err.writeErrors : [err.writeErrors];
}

function isDuplicateId(error: WriteError): boolean {
  return error.code === 11000 && DUPLICATE_ID.test(error.errmsg ?? '');
}

/**
 * For a failed insertMany of `sent` documents: how many were already stored, when every document
 * is now stored (inserted or a duplicate `_id` from an earlier attempt); null when it must be
 * sent again. The counts must add up: a connection lost mid-way leaves later wire batches unsent.
 */
export function duplicatesOnly(err: unknown, sent: number): number | null {
  if (!(err instanceof MongoBulkWriteError) || err.result.getWriteConcernError() !== undefined) return null;
  const errors = writeErrorsOf(err);
  if (errors.length === 0 || !errors.every(isDuplicateId)) return null;
  return err.insertedCount + errors.length === sent ? errors.length : null;
}

/** MongoDB could not be reached, as opposed to refusing what was asked. */
export function isUnreachable(err: unknown): boolean {
  return (
    err instanceof MongoNetworkError ||
    err instanceof MongoServerSelectionError ||
    err instanceof MongoTopologyClosedError
  );
}

/** Server codes for a document refused for what it is: too large, failing validation, bad value. */
const REFUSAL_CODES = new Set([2, 121, 10334, 17419]);

/**
 * MongoDB, or the driver before it, refusing what was sent (a document over 16 MiB, one failing
 * validation), as opposed to being unreachable: the same batch would fail again forever.
 */
export function isRefusal(err: unknown): boolean {
  if (isUnreachable(err)) return false;
  if (err instanceof MongoBulkWriteError) return writeErrorsOf(err).some((e) => !isDuplicateId(e));
  if (err instanceof MongoServerError) return typeof err.code === 'number' && REFUSAL_CODES.has(err.code);
  return err instanceof MongoInvalidArgumentError || err instanceof RangeError || err instanceof BSON.BSONError;
}

/** insertOne's answer for a document stored by an earlier attempt. */
export function isDuplicateIdError(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === 11000 && DUPLICATE_ID.test(err.message);
}

export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as { code?: unknown }).code;
  const shown = typeof code === 'number' || typeof code === 'string' ? ` ${code}` : '';
  return `${err.name}${shown}: ${err.message}`;
}
