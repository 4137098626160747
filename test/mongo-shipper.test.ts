/**
 * The MongoDB shipper against the real journal and the MongoDB wire-protocol double: BSON types,
 * indexes, outages, dropped connections, stalls, restarts, torn lines and segment deletion.
 */
import assert from 'node:assert/strict';
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { EJSON } from 'bson';
import { MongoClient } from 'mongodb';
import type { MongoClientOptions } from 'mongodb';
import { Journal, listSegments } from '../src/audit/journal/journal.ts';
import type { JournalOptions } from '../src/audit/journal/journal.ts';
import { CHECKPOINT_FILE, DEAD_LETTER_FILE, MongoShipper, MongoShipperConfigError } from '../src/audit/shipper/mongo.ts';
import type { MongoShipperOptions, ShipperStats } from '../src/audit/shipper/mongo.ts';
import type { AuditRecord } from '../src/audit/record/record.ts';
import { startMongoDouble } from './support/mongo-double.ts';
import type { MongoDouble } from './support/mongo-double.ts';
import { chatRecord } from './support/records.ts';
import { removeTempDirs, tempDir } from './support/temp-dirs.ts';

const CLIENT: MongoClientOptions = { serverSelectionTimeoutMS: 1000, heartbeatFrequencyMS: 500, connectTimeoutMS: 1000 };
const DB = 'openai_proxy';
const COLL = 'requests';

after(async () => {
  await removeTempDirs();
});

/** A chat completion as the proxy records it, ended just now. */
function record(n: number): AuditRecord {
  return chatRecord(n, {
    id: `req-${String(n).padStart(6, '0')}`,
    startedAt: new Date(Date.now() - 1500),
    durationMs: 1500.25,
    institution: n % 2 === 0 ? 'univ-a' : 'univ-b',
    requestBody: { model: 'gpt-4o-mini', messages: [{ role: 'user', content: `Question ${n}: summarise the borrowing rules.` }] },
    answer: 'Graduate students may borrow… '.repeat(8),
    outputText: 'Graduate students may borrow…',
  });
}

const ids = (from: number, count: number): string[] => Array.from({ length: count }, (_, i) => record(from + i)._id);

async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  show: () => unknown = () => null,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(show())}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

interface Fixture {
  dir: string;
  mongo: MongoDouble;
  journal: Journal;
  /** The shipper the journal's retention asks. */
  current: MongoShipper | null;
  ship(overrides?: Partial<MongoShipperOptions>): MongoShipper;
  append(from: number, count: number): Promise<void>;
  /** Stored documents, by `_id`. */
  stored(db?: string): string[];
  inserts(): number;
  waitForStats(what: string, condition: (s: ShipperStats) => boolean, shipper?: MongoShipper): Promise<void>;
}

interface FixtureOptions {
  /** MongoDB not listening at first (its port is known: start() brings it up there). */
  down?: boolean;
  maxWriteBatchSize?: number;
  journal?: Partial<JournalOptions>;
}

async function setUp(t: TestContext, opts: FixtureOptions = {}): Promise<Fixture> {
  const dir = await tempDir('mongo-shipper-test-');
  const mongo = await startMongoDouble({ maxWriteBatchSize: opts.maxWriteBatchSize ?? 1000 });
  if (opts.down === true) await mongo.stop();
  const shippers: MongoShipper[] = [];
  const journal = await Journal.open({
    dir, segmentBytes: 1024 * 1024, fsync: 'never', log: () => undefined,
    canDelete: (path) => f.current?.canDelete(path) ?? false,
    ...opts.journal,
  });
  t.after(async () => {
    mongo.stall(false);
    await Promise.all(shippers.map((shipper) => shipper.stop()));
    await journal.close();
    await mongo.stop();
  });
  const f: Fixture = {
    dir, mongo, journal, current: null,
    ship: (overrides = {}) => {
      const shipper = MongoShipper.start({
        uri: mongo.uri, db: DB, dir, ttlDays: null, keepShipped: true, clientOptions: CLIENT, journal, ...overrides,
      });
      shippers.push(shipper);
      f.current = shipper;
      return shipper;
    },
    append: async (from, count) => {
      for (let i = 0; i < count; i++) journal.append(record(from + i));
      await journal.flush();
    },
    stored: (db = DB) => mongo.documents(db, COLL).map((doc) => String(doc._id)),
    inserts: () => mongo.commands.filter((name) => name === 'insert').length,
    waitForStats: (what, condition, shipper = f.current ?? undefined) => {
      assert.ok(shipper);
      return waitFor(what, () => condition(shipper.stats()), () => shipper.stats());
    },
  };
  return f;
}

function assertExactlyOnce(stored: string[], expected: string[]): void {
  assert.equal(stored.length, expected.length, 'total documents');
  assert.equal(new Set(stored).size, expected.length, 'distinct _ids');
  assert.deepEqual([...stored].sort(), [...expected].sort());
}

const caughtUp = (count: number) => (s: ShipperStats): boolean => s.shipped === count && s.lagRecords === 0 && s.state === 'idle';

describe('MongoShipper', () => {
  test('ships records with BSON dates and creates the indexes, TTL included', async (t) => {
    const f = await setUp(t);
    const shipper = f.ship({ ttlDays: 30 });
    assert.equal(shipper.namespace, `${DB}.${COLL}`);
    await f.append(0, 20);
    await f.waitForStats('20 records shipped', caughtUp(20));

    const docs = f.mongo.documents(DB, COLL);
    assertExactlyOnce(f.stored(), ids(0, 20));
    const first = docs.find((doc) => doc._id === 'req-000000');
    assert.ok(first);
    assert.ok(first.startedAt instanceof Date, 'startedAt is a BSON date');
    assert.ok(first.endedAt instanceof Date, 'endedAt is a BSON date');
    assert.equal(first.endedAt.getTime() - first.startedAt.getTime(), 1500);
    assert.deepEqual((first.openai as Record<string, unknown>).usage, { inputTokens: 12, outputTokens: 30, totalTokens: 42, cachedTokens: 0, reasoningTokens: null });

    await waitFor('the indexes', () => f.mongo.indexes(DB, COLL).length === 6, () => f.mongo.indexes(DB, COLL));
    const indexes = f.mongo.indexes(DB, COLL).map(({ key, expireAfterSeconds }) => ({ key: key as unknown, expireAfterSeconds: expireAfterSeconds as unknown }));
    assert.deepEqual(indexes, [
      { key: { _id: 1 }, expireAfterSeconds: undefined },
      { key: { startedAt: 1 }, expireAfterSeconds: undefined },
      { key: { institution: 1, startedAt: 1 }, expireAfterSeconds: undefined },
      { key: { 'openai.requestModel': 1, startedAt: 1 }, expireAfterSeconds: undefined },
      { key: { 'response.status': 1 }, expireAfterSeconds: undefined },
      { key: { endedAt: 1 }, expireAfterSeconds: 30 * 86_400 },
    ]);
    const stats = shipper.stats();
    assert.equal(stats.up, true);
    assert.equal(stats.lagSeconds, 0);
    assert.equal(stats.retries, 0);
    assert.ok(stats.lastShippedAt !== null && !Number.isNaN(Date.parse(stats.lastShippedAt)));
  });

  test('takes the database from the URI path when it names one, else from the option', async (t) => {
    const f = await setUp(t);
    const withPath = f.mongo.uri.replace('/?', '/audit_db?');
    const shipper = f.ship({ uri: withPath });
    assert.equal(shipper.namespace, 'audit_db.requests');
    await f.append(0, 3);
    await f.waitForStats('3 records shipped', caughtUp(3));
    assertExactlyOnce(f.stored('audit_db'), ids(0, 3));
    assert.equal(f.stored(DB).length, 0);

    // Nothing listens on port 9: these only show the name chosen.
    const dir = await tempDir('mongo-shipper-test-');
    const journal = { onCommit: () => () => undefined, activeSegment: null };
    const named = (uri: string): string => {
      const probe = MongoShipper.start({ uri, db: 'fallback', dir, ttlDays: null, keepShipped: true, journal, clientOptions: CLIENT });
      t.after(() => probe.stop());
      return probe.namespace;
    };
    assert.equal(named('mongodb://127.0.0.1:9'), 'fallback.requests');
    assert.equal(named('mongodb://u:p@127.0.0.1:9,127.0.0.2:9/?replicaSet=rs0'), 'fallback.requests');
    assert.equal(named('mongodb://127.0.0.1:9/test'), 'test.requests', 'an explicit /test is kept');
    assert.equal(named('mongodb://127.0.0.1:9/a%2Db?appName=x'), 'a-b.requests');
    assert.throws(() => named('http://127.0.0.1:9'), (err: unknown) => err instanceof MongoShipperConfigError && err.code === 'audit_shipper_bad_config');
  });

  test('MongoDB down at start: records accumulate, then arrive exactly once', async (t) => {
    const f = await setUp(t, { down: true });
    const before = performance.now();
    const shipper = f.ship();
    assert.ok(performance.now() - before < 100, 'start() returns at once');
    await f.append(0, 300);
    await f.waitForStats('a backlog of 300', (s) => s.lagRecords === 300 && s.retries > 0);
    let stats = shipper.stats();
    assert.equal(stats.up, false);
    assert.equal(stats.state, 'connecting');
    assert.equal(stats.shipped, 0);
    assert.ok(stats.lastError?.startsWith('connecting to MongoDB'), String(stats.lastError));
    const lagSeconds = stats.lagSeconds;
    await f.append(300, 200);
    await f.waitForStats('the lag to grow', (s) => s.lagRecords === 500 && s.lagSeconds > lagSeconds);

    await f.mongo.start();
    const restarted = performance.now();
    await f.waitForStats('500 records shipped', caughtUp(500));
    t.diagnostic(`down at start: caught up ${Math.round(performance.now() - restarted)} ms after MongoDB came up`);
    assertExactlyOnce(f.stored(), ids(0, 500));
    stats = shipper.stats();
    assert.equal(stats.up, true);
    assert.equal(stats.duplicates, 0);
    assert.equal(stats.lagSeconds, 0);
  });

  test('5,000 records with the server stopped in the middle of shipping: every _id arrives exactly once', async (t) => {
    // One segment, so every batch is 500 records; the driver sends each as wire batches of
    // 99,99,99,99,99,5 (it splits at maxWriteBatchSize - 1): 6 insert commands per batch.
    const f = await setUp(t, { maxWriteBatchSize: 100, journal: { segmentBytes: 64 * 1024 * 1024 } });
    // Two whole batches (12 inserts) and 3 wire batches of the third are stored; from the 16th
    // insert on, the server drops the connection without applying it, until it is stopped.
    const admin = new MongoClient(f.mongo.uri, CLIENT);
    await admin.db('admin').command({ configureFailPoint: 'failCommand', mode: { skip: 15 }, data: { failCommands: ['insert'], closeConnection: true } });
    await admin.close();
    const shipper = f.ship();
    await f.append(0, 5000);
    await waitFor('the 16th insert cut', () => f.inserts() >= 16);
    await f.mongo.stop();
    const stopped = performance.now();
    // The cut insert fails at once; the next waits out server selection (1 s) and fails too.
    await f.waitForStats('two failed attempts', (s) => !s.up && s.state === 'retrying' && s.retries >= 2);
    const during = shipper.stats();
    assert.ok(during.shipped < 5000 && during.lagRecords === 5000 - during.shipped, JSON.stringify(during));
    assert.ok(during.lagSeconds > 0.5, `lagSeconds ${during.lagSeconds}`);

    await f.mongo.start();
    const restarted = performance.now();
    await f.waitForStats('a batch shipped again', (s) => s.shipped > during.shipped);
    const resumed = performance.now();
    await f.waitForStats('5,000 records shipped', caughtUp(5000));
    const stats = shipper.stats();
    t.diagnostic(
      `5,000 records, outage of ${Math.round(restarted - stopped)} ms (${during.shipped} shipped before it): first batch ` +
        `${Math.round(resumed - restarted)} ms and caught up ${Math.round(performance.now() - restarted)} ms after MongoDB ` +
        `came back; retries ${stats.retries}, duplicates ${stats.duplicates}`,
    );
    assert.equal(stats.duplicates, 3 * 99, 'the replayed batch found its first 3 wire batches stored');
    assertExactlyOnce(f.stored(), ids(0, 5000));
  });

  test('a connection dropped mid-batch: the batch is replayed and its duplicates count as shipped', async (t) => {
    const f = await setUp(t);
    const shipper = f.ship();
    await f.waitForStats('connected', (s) => s.up && s.state === 'idle');
    f.mongo.dropConnectionsDuringNextInsert();
    await f.append(0, 400);
    await f.waitForStats('400 records shipped', caughtUp(400));
    const stats = shipper.stats();
    assert.ok(stats.retries >= 1, 'the cut batch was retried');
    // One batch of 400 in one wire batch: the double stored half of it before dropping the connection.
    assert.equal(stats.duplicates, 200);
    assertExactlyOnce(f.stored(), ids(0, 400));
  });

  test('a stalled server: the shipper waits, then catches up when released', async (t) => {
    const f = await setUp(t);
    const shipper = f.ship();
    await f.waitForStats('connected', (s) => s.up && s.state === 'idle');
    const inserts = f.inserts();
    f.mongo.stall(true);
    await f.append(0, 100);
    await waitFor('an insert in flight', () => f.inserts() > inserts);
    await f.waitForStats('the lag to show', (s) => s.state === 'shipping' && s.lagRecords === 100 && s.lagSeconds > 0.3);
    assert.equal(shipper.stats().shipped, 0);
    f.mongo.stall(false);
    await f.waitForStats('100 records shipped', caughtUp(100));
    const stats = shipper.stats();
    assert.equal(stats.retries, 0);
    assert.equal(stats.duplicates, 0);
    assertExactlyOnce(f.stored(), ids(0, 100));
  });

  test('a restarted shipper resumes from the checkpoint without re-sending', async (t) => {
    const f = await setUp(t);
    const first = f.ship();
    await f.append(0, 300);
    await f.waitForStats('300 records shipped', caughtUp(300));
    await first.stop();
    assert.equal(first.stats().state, 'stopped');
    const checkpoint = JSON.parse(await readFile(join(f.dir, CHECKPOINT_FILE), 'utf8')) as { segment: string; offset: number };
    assert.equal(checkpoint.segment, basename(f.journal.activeSegment ?? ''));
    assert.ok(checkpoint.offset > 0);

    await f.append(300, 200);
    const inserts = f.inserts();
    const second = f.ship();
    await f.waitForStats('200 more shipped', caughtUp(200), second);
    assert.equal(second.stats().duplicates, 0);
    assert.equal(f.inserts() - inserts, 1, 'one insert, of the new records only');
    assertExactlyOnce(f.stored(), ids(0, 500));
  });

  test('stop() abandons an insert that does not finish; the next shipper sends it exactly once', async (t) => {
    const f = await setUp(t);
    const first = f.ship({ stopGraceMs: 100 });
    await f.waitForStats('connected', (s) => s.up && s.state === 'idle');
    const inserts = f.inserts();
    f.mongo.stall(true);
    await f.append(0, 50);
    await waitFor('an insert in flight', () => f.inserts() > inserts);
    const stopping = performance.now();
    await first.stop();
    assert.ok(performance.now() - stopping < 1000, 'stop() does not wait for the stalled insert');
    assert.equal(first.stats().shipped, 0);
    f.mongo.stall(false);

    const second = f.ship();
    await f.waitForStats('50 records shipped', caughtUp(50), second);
    assertExactlyOnce(f.stored(), ids(0, 50));
  });

  test('a record MongoDB refuses (over 16 MiB) goes to the dead-letter file; the rest ship', async (t) => {
    const f = await setUp(t, { journal: { segmentBytes: 64 * 1024 * 1024 } });
    const shipper = f.ship();
    await f.append(0, 2);
    const huge = record(2);
    huge.request.body = 'x'.repeat(17 * 1024 * 1024);
    f.journal.append(huge);
    await f.append(3, 2);
    await f.waitForStats('4 shipped, 1 dead-lettered', (s) => s.shipped === 4 && s.deadLettered === 1 && s.lagRecords === 0);
    assertExactlyOnce(f.stored(), [...ids(0, 2), ...ids(3, 2)]);
    const dead = (await readFile(join(f.dir, DEAD_LETTER_FILE), 'utf8')).trim().split('\n');
    assert.equal(dead.length, 1);
    assert.equal((EJSON.parse(dead[0] ?? '') as { _id: string })._id, huge._id);
    assert.equal(shipper.stats().up, true);
  });

  test('an unwritable dead-letter file is its own failure: counted, the rest ship, the record is written once it can be', async (t) => {
    const f = await setUp(t, { journal: { segmentBytes: 64 * 1024 * 1024 } });
    // A directory where the file should be: appendFile fails (EISDIR) even for root.
    const deadLetter = join(f.dir, DEAD_LETTER_FILE);
    await mkdir(deadLetter);
    const shipper = f.ship();
    await f.append(0, 2);
    const huge = record(2);
    huge.request.body = 'x'.repeat(17 * 1024 * 1024);
    f.journal.append(huge);
    await f.append(3, 2);
    await f.waitForStats('4 shipped, the refused one waiting', (s) => s.shipped === 4 && s.deadLetterPending === 1 && s.deadLetterFailures >= 1 && s.lagRecords === 0);
    let stats = shipper.stats();
    assert.equal(stats.deadLettered, 0, 'nothing is counted as dead-lettered before it is written');
    assert.match(stats.lastError ?? '', /^writing the dead-letter file: /);
    assertExactlyOnce(f.stored(), [...ids(0, 2), ...ids(3, 2)]);

    // Shipping goes on past it.
    await f.append(5, 3);
    await f.waitForStats('7 shipped', (s) => s.shipped === 7 && s.lagRecords === 0);
    assert.equal(shipper.stats().deadLettered, 0);

    // The path becomes writable: the waiting record is written, once, and counted once.
    await rm(deadLetter, { recursive: true });
    await f.append(8, 1);
    await f.waitForStats('the refused record written', (s) => s.deadLettered === 1 && s.deadLetterPending === 0 && s.shipped === 8);
    stats = shipper.stats();
    const dead = (await readFile(deadLetter, 'utf8')).trim().split('\n');
    assert.equal(dead.length, 1);
    assert.equal((EJSON.parse(dead[0] ?? '') as { _id: string })._id, huge._id);
    assert.equal(stats.shipped, 8);
    assertExactlyOnce(f.stored(), [...ids(0, 2), ...ids(3, 6)]);
  });

  test('torn lines are skipped and counted', async (t) => {
    const f = await setUp(t);
    // A segment from before a crash: a torn line in the middle, and (added below) a partial last line.
    const old = join(f.dir, 'audit-0000000000000000.ndjson');
    const line = (n: number): string => `${EJSON.stringify(record(n), { relaxed: true })}\n`;
    await writeFile(old, `${line(0)}{"_id":"req-torn","startedAt":{"$date":"2025-\n${line(1)}`);
    await appendFile(old, '{"_id":"req-tail","sche');
    const shipper = f.ship();
    await f.append(2, 1);
    await f.waitForStats('3 records shipped', caughtUp(3));
    assert.equal(shipper.stats().skippedLines, 2);
    assertExactlyOnce(f.stored(), ids(0, 3));
  });

  test('shipped segments are deleted, never the active one', async (t) => {
    const f = await setUp(t, { journal: { segmentBytes: 4096 } });
    const shipper = f.ship({ keepShipped: false });
    await f.append(0, 20);
    await f.waitForStats('20 records shipped', caughtUp(20));
    const active = f.journal.activeSegment;
    assert.ok(active !== null && !active.endsWith('audit-0000000000000001.ndjson'), `rotated: ${active}`);
    assert.deepEqual(await listSegments(f.dir), [active]);
    assert.equal(shipper.canDelete(active), false);
  });

  test('kept segments: canDelete lets the journal delete only what is shipped', async (t) => {
    // MongoDB down: the journal's retention (4 KiB) would delete segments, but none is shipped.
    const f = await setUp(t, { down: true, journal: { segmentBytes: 4096, retentionBytes: 4096 } });
    const shipper = f.ship({ keepShipped: true });
    await f.append(0, 20);
    const segments = await listSegments(f.dir);
    assert.ok(segments.length >= 5, `${segments.length} segments`);
    for (const path of segments) assert.equal(shipper.canDelete(path), false, `nothing is shipped: ${path}`);

    await f.mongo.start();
    await f.waitForStats('20 records shipped', caughtUp(20));
    const [oldest] = segments;
    assert.ok(oldest !== undefined);
    assert.equal(shipper.canDelete(oldest), true);
    assert.equal(shipper.canDelete(f.journal.activeSegment ?? ''), false, 'the checkpoint is in the active segment');
    assert.equal(shipper.canDelete(join(f.dir, 'audit-9999999999999999.ndjson')), false);
    assert.equal(shipper.canDelete(join(f.dir, 'not-a-segment.ndjson')), false);
    assert.deepEqual(await listSegments(f.dir), segments, 'shipped segments are kept');

    // The next rotation runs the journal's retention, which may now take the shipped segments.
    await f.append(20, 4);
    await waitFor('retention to delete shipped segments', async () => !(await listSegments(f.dir)).includes(oldest));
    await f.waitForStats('24 records shipped', caughtUp(24));
  });

  test('indexes are created again when MongoDB comes back empty', async (t) => {
    const f = await setUp(t);
    f.ship({ ttlDays: 7 });
    await waitFor('the indexes', () => f.mongo.indexes(DB, COLL).length === 6);
    await f.mongo.stop({ wipe: true });
    await f.waitForStats('the server lost', (s) => !s.up);
    await f.mongo.start();
    const restarted = performance.now();
    await waitFor('the indexes again', () => f.mongo.indexes(DB, COLL).length === 6);
    t.diagnostic(`indexes re-created ${Math.round(performance.now() - restarted)} ms after MongoDB came back`);
    await f.waitForStats('up again', (s) => s.up);
  });
});
