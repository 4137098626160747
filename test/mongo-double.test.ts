/**
 * The MongoDB double driven by the real `mongodb` driver: if these pass, the driver accepts the
 * double, and the failure modes it simulates surface as the errors the shipper will really see.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import {
  MongoBulkWriteError,
  MongoClient,
  MongoNetworkError,
  MongoServerError,
  MongoServerSelectionError,
} from 'mongodb';
import type {
  Collection,
  CommandStartedEvent,
  MongoClientOptions,
  ServerDescriptionChangedEvent,
  WriteError,
} from 'mongodb';
import { startMongoDouble } from './support/mongo-double.ts';
import type { MongoDouble } from './support/mongo-double.ts';

const CLIENT_OPTIONS: MongoClientOptions = {
  serverSelectionTimeoutMS: 1500,
  heartbeatFrequencyMS: 500,
  connectTimeoutMS: 1000,
  directConnection: true,
  retryWrites: false,
  maxPoolSize: 2,
};

interface Rec {
  _id: string | number;
  [field: string]: unknown;
}

interface Setup {
  mongo: MongoDouble;
  client: MongoClient;
  coll: Collection<Rec>;
}

async function withMongo(
  fn: (s: Setup) => Promise<void>,
  opts: { maxWriteBatchSize?: number; client?: MongoClientOptions } = {},
): Promise<void> {
  const mongo = await startMongoDouble({ maxWriteBatchSize: opts.maxWriteBatchSize ?? 1000 });
  const client = new MongoClient(mongo.uri, { ...CLIENT_OPTIONS, ...opts.client });
  try {
    await client.connect();
    await fn({ mongo, client, coll: client.db('audit').collection<Rec>('records') });
  } finally {
    mongo.stall(false);
    await client.close();
    await mongo.stop();
  }
}

/** Resolves to whether `p` settled within `ms`; proving that something hangs needs a bound. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const settled = p.then(() => true, () => true);
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const records = (from: number, count: number): Rec[] =>
  Array.from({ length: count }, (_, i) => ({
    _id: from + i,
    n: from + i,
    tag: (from + i) % 3,
    createdAt: new Date(Date.UTC(2025, 0, 1) + (from + i) * 1000),
  }));

/** Resolves when the driver's monitor has marked the server Unknown (it noticed the outage). */
function serverMarkedUnknown(client: MongoClient): Promise<void> {
  return new Promise((resolve) => {
    const listener = (event: ServerDescriptionChangedEvent): void => {
      if (event.newDescription.type !== 'Unknown') return;
      client.off('serverDescriptionChanged', listener);
      resolve();
    };
    client.on('serverDescriptionChanged', listener);
  });
}

/** Resolves when the driver sends the nth `name` command (needs monitorCommands). */
function commandStarted(client: MongoClient, name: string, nth: number): Promise<void> {
  let seen = 0;
  return new Promise((resolve) => {
    const listener = (event: CommandStartedEvent): void => {
      if (event.commandName !== name || ++seen < nth) return;
      client.off('commandStarted', listener);
      resolve();
    };
    client.on('commandStarted', listener);
  });
}

const insertCommands = (mongo: MongoDouble): number => mongo.commands.filter((c) => c === 'insert').length;

void describe('mongo double, driven by the real driver', () => {
  void it('creates TTL, compound and unique indexes and reports conflicts', async () => {
    await withMongo(async ({ mongo, coll }) => {
      const names = await coll.createIndexes([
        { key: { createdAt: 1 }, name: 'ttl_createdAt', expireAfterSeconds: 3600 },
        { key: { tenant: 1, createdAt: -1 }, name: 'tenant_createdAt' },
        { key: { requestId: 1 }, name: 'requestId', unique: true },
      ]);
      assert.deepEqual(names, ['ttl_createdAt', 'tenant_createdAt', 'requestId']);
      await coll.createIndex({ createdAt: 1 }, { name: 'ttl_createdAt', expireAfterSeconds: 3600 });

      const listed = await coll.indexes();
      assert.deepEqual(listed.map((ix) => ix.name), ['_id_', 'ttl_createdAt', 'tenant_createdAt', 'requestId']);
      assert.deepEqual(mongo.indexes('audit', 'records')[1], {
        v: 2, key: { createdAt: 1 }, name: 'ttl_createdAt', expireAfterSeconds: 3600,
      });
      assert.deepEqual(mongo.indexes('audit', 'records')[2]?.key, { tenant: 1, createdAt: -1 });

      await assert.rejects(coll.createIndex({ other: 1 }, { name: 'requestId' }), { code: 86 });
      await assert.rejects(coll.createIndex({ createdAt: 1 }, { name: 'ttl_createdAt', expireAfterSeconds: 60 }), { code: 85 });
      await assert.rejects(coll.createIndex({ a: 'text' }), { code: 238 });

      // A unique index treats a missing field as null, as mongod does.
      await coll.insertOne({ _id: 'a' });
      await assert.rejects(coll.insertOne({ _id: 'b' }), (err: unknown) => {
        assert.ok(err instanceof MongoServerError);
        assert.equal(err.code, 11000);
        assert.deepEqual(err.keyValue, { requestId: null });
        return true;
      });
    });
  });

  void it('unordered insertMany across wire batches reports duplicates at the caller\'s indexes', async () => {
    await withMongo(async ({ mongo, coll }) => {
      const docs = records(0, 2500);
      docs[7] = { ...docs[7], _id: 3 };
      docs[1500] = { ...docs[1500], _id: 5 };
      docs[2400] = { ...docs[2400], _id: 1499 };

      await assert.rejects(coll.insertMany(docs, { ordered: false }), (err: unknown) => {
        assert.ok(err instanceof MongoBulkWriteError);
        assert.equal(err.code, 11000);
        assert.equal(err.insertedCount, 2497);
        const errors = ([] as WriteError[]).concat(err.writeErrors);
        assert.deepEqual(errors.map((e) => [e.index, e.code]), [[7, 11000], [1500, 11000], [2400, 11000]]);
        return true;
      });
      // The driver splits at maxWriteBatchSize - 1: 999, 999, 502.
      assert.equal(insertCommands(mongo), 3);

      const stored = mongo.documents('audit', 'records');
      assert.equal(stored.length, 2497);
      assert.deepEqual(Object.keys(stored[0] ?? {}), ['_id', 'n', 'tag', 'createdAt']);
      assert.ok(stored[0]?.createdAt instanceof Date);
      assert.equal(typeof stored[0]?.n, 'number');
    });
  });

  void it('ordered insertMany stops at the first duplicate', async () => {
    await withMongo(async ({ mongo, coll }) => {
      await assert.rejects(coll.insertMany([{ _id: 1 }, { _id: 1 }, { _id: 2 }]), (err: unknown) => {
        assert.ok(err instanceof MongoBulkWriteError);
        assert.equal(err.insertedCount, 1);
        return true;
      });
      assert.deepEqual(mongo.documents('audit', 'records'), [{ _id: 1 }]);
    });
  });

  void it('finds with filter, sort and limit across getMore batches, and counts', async () => {
    await withMongo(async ({ mongo, coll }) => {
      await coll.insertMany(records(0, 600));
      const found = await coll.find({ tag: { $in: [0, 1] }, n: { $gte: 10 } }, { sort: { n: -1 }, limit: 300 }).toArray();
      assert.equal(found.length, 300);
      assert.equal(found[0]?.n, 598);
      assert.ok(found.every((d, i) => i === 0 || (found[i - 1]?.n as number) > (d.n as number)));
      assert.ok(mongo.commands.includes('getMore'));
      const cursor = coll.find({}, { batchSize: 10 });
      await cursor.next();
      await cursor.close();
      assert.ok(mongo.commands.includes('killCursors'));

      const page = await coll.find({ $or: [{ n: { $lt: 3 } }, { missing: { $exists: true } }] })
        .sort({ n: 1 }).skip(1).toArray();
      assert.deepEqual(page.map((d) => d.n), [1, 2]);
      const since = await coll.countDocuments({ createdAt: { $gte: new Date(Date.UTC(2025, 0, 1) + 590_000) } });
      assert.equal(since, 10);
      assert.equal(await coll.countDocuments({ tag: 0 }), 200);
      assert.equal(await coll.countDocuments({ tag: 7 }), 0);
      assert.equal(await coll.estimatedDocumentCount(), 600);

      assert.equal((await coll.deleteMany({ n: { $lt: 100 } })).deletedCount, 100);
      assert.equal(await coll.countDocuments(), 500);
      await assert.rejects(coll.find({ n: { $regex: 'x' } }).toArray(), { code: 238 });
      await assert.rejects(coll.find({}, { projection: { n: 1 } }).toArray(), { code: 238 });
      await assert.rejects(coll.db.command({ replSetGetStatus: 1 }), { code: 59 });
    });
  });

  void it('sends no reply to an unacknowledged write (moreToCome)', async () => {
    await withMongo(async ({ mongo, coll }) => {
      await coll.insertOne({ _id: 'w0' }, { writeConcern: { w: 0 } });
      assert.equal(await coll.countDocuments(), 1);
      assert.equal(mongo.documents('audit', 'records').length, 1);
    });
  });

  void it('stopped: inserts fail; started again: the driver reconnects by itself and data is kept', async () => {
    await withMongo(async ({ mongo, client, coll }) => {
      await coll.insertOne({ _id: 'before' });
      const noticed = serverMarkedUnknown(client);
      await mongo.stop();
      // Right after the stop the pooled socket still looks alive: a network error within milliseconds.
      await assert.rejects(coll.insertOne({ _id: 'down' }), (err: unknown) =>
        err instanceof MongoNetworkError || err instanceof MongoServerSelectionError);
      await noticed;
      // Once the monitor has noticed, a write waits serverSelectionTimeoutMS; insertMany wraps the cause.
      await assert.rejects(coll.insertMany([{ _id: 'down-many' }]), (err: unknown) => {
        assert.ok(err instanceof MongoBulkWriteError);
        assert.ok(err.errorResponse instanceof MongoServerSelectionError);
        assert.equal(err.insertedCount, 0);
        return true;
      });

      // Issued while down: it waits in server selection and succeeds once the server is back.
      const pending = coll.insertOne({ _id: 'while-down' });
      await mongo.start();
      await pending;
      await coll.insertOne({ _id: 'after' });
      const ids = (await coll.find().sort({ _id: 1 }).toArray()).map((d) => d._id);
      assert.deepEqual(ids, ['after', 'before', 'while-down']);
    });
  });

  void it('stopped in the middle of insertMany: MongoBulkWriteError counting only the batches answered', async () => {
    await withMongo(async ({ mongo, client, coll }) => {
      // Hold the second wire batch on the server so the stop lands while it is in flight.
      await client.db('admin').command({ configureFailPoint: 'failCommand', mode: { skip: 1 },
        data: { failCommands: ['insert'], blockConnection: true, blockTimeMS: 60_000 } });
      const secondBatch = commandStarted(client, 'insert', 2);
      const insert = coll.insertMany(records(0, 2500), { ordered: false });
      await secondBatch;
      await mongo.stop();
      await assert.rejects(insert, (err: unknown) => {
        assert.ok(err instanceof MongoBulkWriteError && !(err instanceof MongoNetworkError));
        assert.ok(err.errorResponse instanceof MongoNetworkError);
        assert.ok(err.hasErrorLabel('ResetPool'));
        assert.equal(err.insertedCount, 999);
        assert.deepEqual(err.writeErrors, []);
        return true;
      });
      assert.equal(mongo.documents('audit', 'records').length, 999);
    }, { client: { monitorCommands: true } });
  });

  void it('a stalled server makes an insert hang until it is un-stalled', async () => {
    await withMongo(async ({ mongo, coll }) => {
      mongo.stall(true);
      const insert = coll.insertOne({ _id: 'slow' });
      assert.equal(await settlesWithin(insert, 300), false);
      assert.deepEqual(mongo.documents('audit', 'records'), []);
      mongo.stall(false);
      await insert;
      assert.deepEqual(mongo.documents('audit', 'records'), [{ _id: 'slow' }]);
    });
  });

  void it('a connection dropped in the middle of an insert fails insertMany; the next operation reconnects', async () => {
    await withMongo(async ({ mongo, client, coll }) => {
      const cleared = once(client, 'connectionPoolCleared');
      mongo.dropConnectionsDuringNextInsert();
      await assert.rejects(coll.insertMany(records(0, 2500), { ordered: false }), (err: unknown) => {
        assert.ok(err instanceof MongoBulkWriteError);
        assert.match(err.message, /closed/);
        // The driver cannot know that half of the batch was stored.
        assert.equal(err.insertedCount, 0);
        return true;
      });
      await cleared;
      // Half of the first wire batch (999 documents) was stored; the later batches were never sent.
      assert.equal(mongo.documents('audit', 'records').length, 499);
      assert.equal(insertCommands(mongo), 1);
      await coll.insertOne({ _id: 'next' });
      assert.equal(await coll.countDocuments(), 500);
    });
  });

  void it('configureFailPoint failCommand injects errors and closed connections', async () => {
    await withMongo(async ({ mongo, client, coll }) => {
      const admin = client.db('admin');
      await admin.command({ configureFailPoint: 'failCommand', mode: { times: 1 }, data: { failCommands: ['insert'], errorCode: 91 } });
      await assert.rejects(coll.insertOne({ _id: 1 }), { code: 91 });
      await coll.insertOne({ _id: 1 });

      await admin.command({ configureFailPoint: 'failCommand', mode: { times: 1 }, data: { failCommands: ['insert'], closeConnection: true } });
      await assert.rejects(coll.insertOne({ _id: 2 }), MongoNetworkError);
      // Reads, unlike writes, are retried once even against a standalone.
      await admin.command({ configureFailPoint: 'failCommand', mode: { times: 1 }, data: { failCommands: ['find'], closeConnection: true } });
      assert.equal((await coll.find().toArray()).length, 1);
      assert.equal(mongo.commands.filter((c) => c === 'find').length, 2);

      await admin.command({ configureFailPoint: 'failCommand', mode: 'alwaysOn', data: { failCommands: ['ping'], blockConnection: true, blockTimeMS: 200 } });
      const started = Date.now();
      await admin.command({ ping: 1 });
      assert.ok(Date.now() - started >= 190);
      await admin.command({ configureFailPoint: 'failCommand', mode: 'off' });
    });
  });
  void it('findOneAndUpdate and updateOne: upsert, $inc, $setOnInsert, $max, a $lt filter, and 11000 on a taken _id', async () => {
    await withMongo(async ({ client }) => {
      const coll = client.db('audit').collection<{ _id: string }>('quotas');
      const expireAt = new Date('2026-12-08T00:00:00Z');
      const reserve = (limit: number): Promise<unknown> =>
        coll.findOneAndUpdate({ _id: 'q', count: { $lt: limit } }, { $inc: { count: 1 }, $setOnInsert: { expireAt } }, { upsert: true, returnDocument: 'after' });
      assert.deepEqual(await reserve(2), { _id: 'q', count: 1, expireAt });
      assert.deepEqual(await reserve(2), { _id: 'q', count: 2, expireAt });
      // Full: the filter fails, the upsert inserts a second 'q', and the unique _id refuses it.
      await assert.rejects(reserve(2), (err: unknown) => err instanceof MongoServerError && err.code === 11000);
      // Without upsert, a document that does not match is simply not returned.
      assert.equal(await coll.findOneAndUpdate({ _id: 'q', count: { $lt: 2 } }, { $inc: { count: 1 } }, { returnDocument: 'after' }), null);
      // returnDocument before; $setOnInsert is not applied to an existing document; $max keeps the larger.
      const before = await coll.findOneAndUpdate({ _id: 'q' }, { $inc: { count: -1 }, $setOnInsert: { other: 1 }, $max: { peak: 5 } }, { returnDocument: 'before' });
      assert.deepEqual(before, { _id: 'q', count: 2, expireAt });
      await coll.updateOne({ _id: 'q' }, { $max: { peak: 3 }, $inc: { tokens: 1.5 } });
      assert.deepEqual(await coll.findOne({ _id: 'q' }), { _id: 'q', count: 1, expireAt, peak: 5, tokens: 1.5 });
      const up = await coll.updateOne({ _id: 'r', kind: 'x' }, { $inc: { n: 2 }, $set: { at: 1 } }, { upsert: true });
      assert.deepEqual([up.upsertedId, up.matchedCount, up.upsertedCount], ['r', 0, 1]);
      assert.deepEqual(await coll.findOne({ _id: 'r' }), { _id: 'r', kind: 'x', n: 2, at: 1 });
      await assert.rejects(coll.updateOne({ _id: 'r' }, { $inc: { n: 1 }, $set: { n: 1 } }), { code: 40 });
      await assert.rejects(coll.updateOne({ _id: 'r' }, [{ $set: { n: 1 } }]), { code: 238 });
    });
  });
});
