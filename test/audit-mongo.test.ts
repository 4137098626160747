/**
 * The audit trail into MongoDB through the running proxy. Against a real mongod when the test
 * environment sets MONGODB_URI (e.g. `docker compose -f deploy/docker-compose.yml up -d mongo`),
 * otherwise against the wire-protocol double of test/support/mongo-double.ts; the outage tests
 * need the double's stop/start and run only on it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MongoClient, type Document } from 'mongodb';
import { request } from 'undici';
import { startMongoDouble, type MongoDouble } from './support/mongo-double.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { until } from './support/net.ts';

const API_KEY = 'sk-mongo-e2e-SecretKey-abcdef0123';
// Short driver timeouts so outages are noticed and recovered from within the test's bounds.
const FAST = 'serverSelectionTimeoutMS=1000&heartbeatFrequencyMS=500&connectTimeoutMS=1000';

let upstream: Upstream;
let double: MongoDouble | null = null;
let baseUri: string;

function uriFor(db: string): string {
  const url = new URL(baseUri);
  url.pathname = `/${db}`;
  url.search = url.search === '' ? `?${FAST}` : `${url.search}&${FAST}`;
  return url.toString();
}

before(async () => {
  upstream = await startUpstream();
  const real = process.env.MONGODB_URI;
  if (real !== undefined && real !== '') baseUri = real;
  else {
    double = await startMongoDouble({ maxWriteBatchSize: 1000 });
    baseUri = double.uri;
  }
});

after(async () => {
  await double?.stop({ wipe: true });
  await upstream.close();
});

async function send(proxy: TestProxy, n: number, concurrency = 16): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      next++;
      const res = await request(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
        headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, 'x-institution-id': 'law' },
      });
      await res.body.dump();
      assert.equal(res.statusCode, 200);
      ids.push(String(res.headers['x-proxy-request-id']));
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return ids;
}

async function withProxy(db: string, fn: (proxy: TestProxy, client: MongoClient) => Promise<void>): Promise<void> {
  const proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: mkdtempSync(join(tmpdir(), 'audit-mongo-')),
    MONGODB_URI: uriFor(db),
    AUDIT_TTL_DAYS: '30',
  });
  const client = new MongoClient(uriFor(db));
  try {
    await fn(proxy, client);
  } finally {
    await proxy.close();
    await client.close();
  }
}

function shippedAll(proxy: TestProxy, n: number): () => boolean {
  return () => {
    const stats = proxy.runtime.shipper?.stats();
    return stats !== undefined && stats.shipped >= n && stats.lagRecords === 0;
  };
}

describe('records in MongoDB', () => {
  test('BSON dates, indexes, the key nowhere, exactly the records the proxy served', async () => {
    const db = `audit_${randomUUID().slice(0, 8)}`;
    await withProxy(db, async (proxy, client) => {
      const ids = await send(proxy, 50);
      await until(shippedAll(proxy, 50), 15_000, 'shipping');
      const requests = client.db(db).collection('requests');
      const docs = await requests.find({}).toArray();
      assert.deepEqual(new Set(docs.map((d) => d._id as unknown as string)), new Set(ids));
      const doc = docs[0] as Document;
      assert.ok(doc.startedAt instanceof Date && doc.endedAt instanceof Date);
      assert.equal(doc.institution, 'law');
      assert.equal((doc.openai as { requestModel: string }).requestModel, 'gpt-4o-mini');
      assert.ok(!JSON.stringify(docs).includes(API_KEY), 'the raw key is nowhere in MongoDB');
      const indexes = (await requests.listIndexes().toArray()) as Array<{ key: Document; expireAfterSeconds?: number }>;
      const names = indexes.map((i) => JSON.stringify(i.key));
      for (const key of ['{"startedAt":1}', '{"institution":1,"startedAt":1}', '{"openai.requestModel":1,"startedAt":1}', '{"response.status":1}', '{"endedAt":1}']) {
        assert.ok(names.includes(key), `index ${key}`);
      }
      const ttl = indexes.find((i) => JSON.stringify(i.key) === '{"endedAt":1}');
      assert.equal(ttl?.expireAfterSeconds, 30 * 86400);
      const health = (await (await request(`${proxy.adminUrl}/healthz`)).body.json()) as { audit: { shipper: { up: boolean; lagRecords: number } } };
      assert.equal(health.audit.shipper.up, true);
      assert.equal(health.audit.shipper.lagRecords, 0);
    });
  });
});

describe('outages (wire-protocol double only)', () => {
  test('MongoDB down at start: the proxy serves at full speed, the journal grows, everything arrives once it is back', async (t) => {
    if (double === null) return t.skip('needs the double to stop and start MongoDB');
    const mongo = double;
    const db = `audit_${randomUUID().slice(0, 8)}`;
    await mongo.stop();
    await withProxy(db, async (proxy) => {
      const ids = await send(proxy, 300);
      await until(() => (proxy.runtime.shipper?.stats().lagRecords ?? 0) === 300, 10_000, 'the backlog');
      assert.equal(proxy.runtime.shipper?.stats().up, false);
      await mongo.start();
      await until(shippedAll(proxy, 300), 20_000, 'catching up');
      const docs = mongo.documents(db, 'requests');
      assert.equal(docs.length, 300);
      assert.deepEqual(new Set(docs.map((d) => d._id as string)), new Set(ids));
    });
  });

  test('5,000 requests with MongoDB stopped in the middle: every record arrives exactly once', async (t) => {
    if (double === null) return t.skip('needs the double to stop and start MongoDB');
    const mongo = double;
    const db = `audit_${randomUUID().slice(0, 8)}`;
    await withProxy(db, async (proxy) => {
      const first = await send(proxy, 2500, 32);
      await until(() => (proxy.runtime.shipper?.stats().shipped ?? 0) > 0, 10_000, 'shipping to start');
      await mongo.stop();
      const second = await send(proxy, 2500, 32);
      await mongo.start();
      await until(shippedAll(proxy, 5000), 60_000, 'catching up');
      const docs = mongo.documents(db, 'requests');
      const ids = docs.map((d) => d._id as string);
      assert.equal(ids.length, 5000, 'no duplicates');
      assert.deepEqual(new Set(ids), new Set([...first, ...second]));
    });
  });
});
