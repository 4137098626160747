/**
 * Limits across replicas (issue 14, "Across replicas" and "MongoDB unreachable"): with MONGODB_URI
 * the request counts live in the `quotas` collection, so three proxy processes sharing one database
 * admit exactly `limit` requests, never one more; tokens are added once each exchange's usage is
 * known; with MongoDB stopped mid-run, `quotaStoreDown: open` admits on local counts and adds them
 * to the shared ones when it is back, and `closed` refuses with 503 quota_unavailable.
 *
 * Against the wire-protocol double (test/support/mongo-double.ts), or a real mongod when the
 * environment sets MONGODB_URI (as test/audit-mongo.test.ts); the outage tests need the double.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MongoClient, type Document } from 'mongodb';
import type { IncomingMessage } from 'node:http';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { waitForRecords } from './support/audit.ts';
import { freePort, until } from './support/net.ts';
import { startMongoDouble, type MongoDouble } from './support/mongo-double.ts';
import { policyDir } from './support/policy.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { MongoQuotaStore } from '../src/policy/quota-store-mongo.ts';
import { EMULATOR_USAGE, startUpstream, type Upstream } from './support/upstream.ts';

const HEADER = 'x-institution-id';
const TOKENS_PER_CHAT = EMULATOR_USAGE.prompt + EMULATOR_USAGE.completion;
const LIMIT = 50;

const files = policyDir();
let upstream: Upstream;
let double: MongoDouble | null = null;
let baseUri: string;

function policy(limit: number, storeDown: 'open' | 'closed'): string {
  return `version: 1
institutions:
  acme: { limits: [ { window: day, requests: ${limit} } ] }
  free: {}
institutionHeader:
  name: ${HEADER}
  trustedFrom: [ 127.0.0.1, "::ffff:127.0.0.1" ]
quotaStoreDown: ${storeDown}
`;
}

function uriFor(db: string): string {
  const url = new URL(baseUri);
  url.pathname = `/${db}`;
  return url.toString();
}

before(async () => {
  upstream = await startUpstream();
  const real = process.env.MONGODB_URI;
  if (real !== undefined && real !== '') baseUri = real;
  else {
    double = await startMongoDouble();
    baseUri = double.uri;
  }
});

after(async () => {
  await double?.stop({ wipe: true });
  await upstream.close();
  files.remove();
});

const upstreamChats = (): number => upstream.requests.filter((r) => r.url === '/v1/chat/completions').length;

async function chat(base: string, institution: string): Promise<{ status: number; code: string | null; ms: number }> {
  const started = performance.now();
  const res = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-client-own-key-0000', [HEADER]: institution },
  });
  const body = await res.body.text();
  const ms = performance.now() - started;
  const code = res.statusCode === 200 ? null : ((JSON.parse(body) as { error: { code: string } }).error.code ?? null);
  return { status: res.statusCode, code, ms };
}

/** The day window's document of `acme`, as every process shares it. */
async function acmeDay(client: MongoClient, db: string): Promise<Document | null> {
  const day = new Date().toISOString().slice(0, 10);
  return client.db(db).collection('quotas').findOne({ _id: `institution:acme|day|${day}` } as Document);
}

function startChild(env: Record<string, string>, port: number, adminPort: number): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, ...env, PORT: String(port), ADMIN_PORT: String(adminPort), METRICS_ENABLED: 'false' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

async function waitReady(adminPort: number): Promise<void> {
  await until(async () => {
    const res = await request(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null);
    await res?.body.dump();
    return res?.statusCode === 200;
  }, 30_000, 'a proxy process ready');
}

describe('limits across replicas', () => {
  test(`three proxy processes on one database, ${LIMIT} requests a day, 240 concurrent requests: exactly ${LIMIT} reach upstream; tokens follow`, async () => {
    const db = `quotas_three_${process.pid}`;
    const policyFile = files.write('three.yaml', policy(LIMIT, 'closed'));
    const children: Array<{ child: ChildProcess; port: number }> = [];
    const client = new MongoClient(uriFor(db));
    const before = upstreamChats();
    try {
      for (let i = 0; i < 3; i++) {
        const [port, adminPort] = [await freePort(), await freePort()];
        const child = startChild(
          {
            UPSTREAM_URL: upstream.url,
            POLICY_FILE: policyFile,
            MONGODB_URI: uriFor(db),
            AUDIT_ENABLED: 'true',
            AUDIT_DIR: mkdtempSync(join(tmpdir(), 'quotas-three-')),
            // Exactness is the store's; a bound this wide keeps 2 busy CPUs from turning into 503s (the outage tests use the default).
            QUOTA_STORE_TIMEOUT_MS: '10000',
          },
          port,
          adminPort,
        );
        children.push({ child, port });
        await waitReady(adminPort);
      }
      const results = await Promise.all(Array.from({ length: 240 }, (_, i) => chat(`http://127.0.0.1:${(children[i % 3] as { port: number }).port}`, 'acme')));
      const admitted = results.filter((r) => r.status === 200).length;
      const refused = results.filter((r) => r.status === 429 && r.code === 'quota_exceeded').length;
      const others = results.filter((r) => r.status !== 200 && r.status !== 429).map((r) => `${r.status} ${r.code}`);
      assert.deepEqual(others, [], 'only admissions and quota refusals');
      assert.equal(admitted, LIMIT, 'admitted across the three processes');
      assert.equal(refused, 240 - LIMIT, 'every other one refused with quota_exceeded');
      assert.equal(upstreamChats() - before, LIMIT, 'reached upstream');
      // One document for the window, TTL-indexed on its end; tokens added as each record was built.
      const dayEnd = new Date(new Date().toISOString().slice(0, 10));
      dayEnd.setUTCDate(dayEnd.getUTCDate() + 1);
      await until(async () => (await acmeDay(client, db))?.tokens === LIMIT * TOKENS_PER_CHAT, 10_000, 'the tokens of every admitted exchange');
      const doc = await acmeDay(client, db);
      assert.equal(doc?.requests, LIMIT);
      assert.deepEqual(doc?.expireAt, dayEnd);
      const ttl = (await client.db(db).collection('quotas').indexes()).find((ix) => ix.name === 'expireAt_ttl');
      assert.deepEqual([ttl?.key, ttl?.expireAfterSeconds], [{ expireAt: 1 }, 0]);
    } finally {
      for (const { child } of children) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        await exited;
      }
      await client.db(db).dropDatabase().catch(() => undefined);
      await client.close();
    }
  });

  test('no limit applies: no round trip to the database on admission', async (t) => {
    if (double === null) return t.skip('counts wire commands on the double');
    const mongo = double;
    const proxy = await inProcess('free.yaml', policy(LIMIT, 'open'), 'quotas_free');
    try {
      const counted = (): number => mongo.commands.filter((c) => c === 'findAndModify').length;
      const before = counted();
      for (let i = 0; i < 5; i++) assert.equal((await chat(proxy.url, 'free')).status, 200);
      assert.equal(counted(), before, 'an institution without limits is never counted in MongoDB');
      assert.equal((await chat(proxy.url, 'acme')).status, 200);
      assert.equal(counted(), before + 1, 'one findAndModify for a limited one');
    } finally {
      await proxy.close();
    }
  });

  test('the store: a duplicate key from a concurrent insert is retried once without upsert; a full window is refused with its totals', async (t) => {
    if (double === null) return t.skip('injects the race with a fail point of the double');
    const db = 'quotas_race';
    const store = new MongoQuotaStore({ uri: uriFor(db), db, timeoutMs: 2000 });
    const admin = new MongoClient(uriFor(db));
    try {
      const expireAt = new Date(Date.UTC(2030, 0, 2));
      const checks = [{ kind: 'requests' as const, limit: 3 }];
      assert.deepEqual(await store.reserve('w', expireAt, checks), { admitted: true, counts: { requests: 1, tokens: 0, costUsd: 0 } });
      // As if another process had inserted the document between this one's match and its insert.
      await admin.db('admin').command({ configureFailPoint: 'failCommand', mode: { times: 1 }, data: { failCommands: ['findAndModify'], errorCode: 11000 } });
      assert.deepEqual(await store.reserve('w', expireAt, checks), { admitted: true, counts: { requests: 2, tokens: 0, costUsd: 0 } });
      await store.add('w', expireAt, { requests: 0, tokens: 40, costUsd: 0.5 });
      assert.deepEqual(await store.reserve('w', expireAt, checks), { admitted: true, counts: { requests: 3, tokens: 40, costUsd: 0.5 } });
      assert.deepEqual(await store.reserve('w', expireAt, checks), { admitted: false, counts: { requests: 3, tokens: 40, costUsd: 0.5 } });
      // A token limit in the same window refuses by the same filter.
      assert.deepEqual(await store.reserve('w', expireAt, [{ kind: 'tokens', limit: 40 }]), { admitted: false, counts: { requests: 3, tokens: 40, costUsd: 0.5 } });
      assert.deepEqual(await admin.db(db).collection('quotas').findOne({ _id: 'w' } as Document), { _id: 'w', requests: 3, tokens: 40, costUsd: 0.5, expireAt });
    } finally {
      await store.close();
      await admin.close();
    }
  });

  test('the TTL index comes with the first write, whatever the policy said at start (a limit added by a reload)', async () => {
    const db = 'quotas_lazy_index';
    const store = new MongoQuotaStore({ uri: uriFor(db), db, timeoutMs: 2000 });
    const admin = new MongoClient(uriFor(db));
    try {
      await store.reserve('lazy', new Date(Date.UTC(2030, 0, 2)), [{ kind: 'requests', limit: 5 }]);
      // Nobody asked for the index: the write itself started it, beside the admission.
      const ttl = async (): Promise<Document | undefined> => (await admin.db(db).collection('quotas').indexes()).find((ix) => ix.name === 'expireAt_ttl');
      await until(async () => (await ttl()) !== undefined, 5000, 'the TTL index');
      assert.equal((await ttl())?.expireAfterSeconds, 0);
    } finally {
      await store.close();
      await admin.close();
    }
  });

  test('MongoDB stopped mid-run, quotaStoreDown: open: admits on local counts (seeded from the shared ones) and adds them to the shared counts when it is back', async (t) => {
    if (double === null) return t.skip('stops the database: the double only');
    const mongo = double;
    const db = 'quotas_open';
    const proxy = await inProcess('open.yaml', policy(10, 'open'), db);
    const client = new MongoClient(uriFor(db), { serverSelectionTimeoutMS: 5000 });
    const before = upstreamChats();
    try {
      for (let i = 0; i < 4; i++) assert.equal((await chat(proxy.url, 'acme')).status, 200);
      await until(async () => (await acmeDay(client, db))?.tokens === 4 * TOKENS_PER_CHAT, 10_000, 'tokens of the first 4');
      await mongo.stop();
      const down = [];
      for (let i = 0; i < 3; i++) down.push(await chat(proxy.url, 'acme'));
      assert.deepEqual(down.map((r) => r.status), [200, 200, 200], 'admitted on local counts while MongoDB is down');
      // Bounded: no request waits for the database longer than QUOTA_STORE_TIMEOUT_MS (and some slack for the exchange).
      assert.ok(Math.max(...down.map((r) => r.ms)) < 1500, `a down database does not stall requests: ${down.map((r) => Math.round(r.ms)).join(', ')} ms`);
      await mongo.start();
      // The 3 counted locally (and their tokens) are added to the shared counts.
      await until(async () => (await acmeDay(client, db).catch(() => null))?.requests === 7, 15_000, 'the local counts added to the shared ones');
      await until(async () => (await acmeDay(client, db))?.tokens === 7 * TOKENS_PER_CHAT, 10_000, 'the tokens counted while down');
      // Shared again: 3 more, then the limit.
      const rest = [];
      for (let i = 0; i < 5; i++) rest.push((await chat(proxy.url, 'acme')).status);
      assert.deepEqual(rest, [200, 200, 200, 429, 429]);
      assert.equal(upstreamChats() - before, 10);
    } finally {
      await proxy.close();
      await client.close();
    }
  });

  test('a client that leaves while MongoDB decides: nothing upstream, its request given back', async (t) => {
    if (double === null) return t.skip('stalls the double');
    const mongo = double;
    const db = 'quotas_leave';
    const proxy = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      POLICY_FILE: files.write('leave.yaml', policy(10, 'closed')),
      MONGODB_URI: uriFor(db),
      AUDIT_ENABLED: 'true',
      AUDIT_DIR: mkdtempSync(join(tmpdir(), 'quotas-')),
      QUOTA_STORE_TIMEOUT_MS: '10000',
    });
    const client = new MongoClient(uriFor(db), { serverSelectionTimeoutMS: 5000 });
    const before = upstreamChats();
    try {
      assert.equal((await chat(proxy.url, 'acme')).status, 200);
      const asked = (): number => mongo.commands.filter((c) => c === 'findAndModify').length;
      const seen = asked();
      mongo.stall(true);
      const abort = new AbortController();
      const pending = request(`${proxy.url}/v1/chat/completions`, {
        method: 'POST',
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [] }),
        headers: { 'content-type': 'application/json', [HEADER]: 'acme' },
        signal: abort.signal,
      }).catch((err: unknown) => err);
      await until(() => asked() > seen, 5000, 'the reservation sent');
      abort.abort();
      await pending;
      // The proxy has seen the client go (its record is written when the exchange ends).
      const records = await waitForRecords(proxy, 2);
      assert.equal(records[1]?.outcome, 'client_aborted');
      mongo.stall(false);
      // The reservation was applied, then given back: the exchange never went upstream.
      await until(async () => (await acmeDay(client, db))?.requests === 1, 10_000, 'the request given back');
      assert.equal(upstreamChats() - before, 1);
    } finally {
      mongo.stall(false);
      await proxy.close();
      await client.close();
    }
  });

  test('a Realtime session is counted in MongoDB too: the second handshake over a limit of 1 is a 429', async (t) => {
    if (double === null) return t.skip('counts wire commands on the double');
    const mongo = double;
    const proxy = await inProcess('realtime.yaml', policy(1, 'closed'), 'quotas_realtime');
    const asked = (): number => mongo.commands.filter((c) => c === 'findAndModify').length;
    const seen = asked();
    const open = (): WebSocket => new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, { headers: { authorization: 'Bearer sk-x', [HEADER]: 'acme' } });
    try {
      const first = open();
      await once(first, 'open');
      first.close();
      await once(first, 'close');
      const second = open();
      const [, response] = (await once(second, 'unexpected-response')) as [unknown, IncomingMessage];
      response.resume();
      assert.equal(response.statusCode, 429);
      assert.equal(response.headers['x-proxy-quota-limit'], '1');
      assert.ok(asked() - seen >= 2, 'each handshake asked MongoDB');
    } finally {
      await proxy.close();
    }
  });

  test('MongoDB stopped mid-run, quotaStoreDown: closed: 503 quota_unavailable, nothing upstream, until it is back', async (t) => {
    if (double === null) return t.skip('stops the database: the double only');
    const mongo = double;
    const proxy = await inProcess('closed.yaml', policy(10, 'closed'), 'quotas_closed');
    const before = upstreamChats();
    try {
      assert.equal((await chat(proxy.url, 'acme')).status, 200);
      await mongo.stop();
      const down = [];
      for (let i = 0; i < 3; i++) down.push(await chat(proxy.url, 'acme'));
      assert.deepEqual(down.map((r) => [r.status, r.code]), Array.from({ length: 3 }, () => [503, 'quota_unavailable']));
      assert.ok(Math.max(...down.map((r) => r.ms)) < 1500, `refused without waiting on the database: ${down.map((r) => Math.round(r.ms)).join(', ')} ms`);
      assert.equal(upstreamChats() - before, 1, 'nothing refused reached upstream');
      assert.equal((await chat(proxy.url, 'free')).status, 200, 'an institution without limits is not held by the store');
      await mongo.start();
      await until(async () => (await chat(proxy.url, 'acme')).status === 200, 15_000, 'admitted again once MongoDB is back');
    } finally {
      await proxy.close();
    }
  });

  test('added latency per admission against the double (p50, reported)', async (t) => {
    if (double === null) return t.skip('a figure for the double');
    const proxy = await inProcess('latency.yaml', policy(1_000_000, 'open'), 'quotas_latency');
    try {
      const p50 = async (institution: string): Promise<number> => {
        const ms: number[] = [];
        for (let i = 0; i < 200; i++) ms.push((await chat(proxy.url, institution)).ms);
        ms.sort((a, b) => a - b);
        return ms[100] as number;
      };
      const mongo = double;
      const counted = (): number => mongo.commands.filter((c) => c === 'findAndModify').length;
      await p50('free');
      const free = await p50('free');
      const before = counted();
      const limited = await p50('acme');
      assert.equal(counted() - before, 200, 'one findAndModify per admission, the one round trip');
      t.diagnostic(`p50 without a limit ${free.toFixed(2)} ms, with a request limit counted in the double ${limited.toFixed(2)} ms: +${(limited - free).toFixed(2)} ms`);
    } finally {
      await proxy.close();
    }
  });
});

async function inProcess(name: string, content: string, db: string): Promise<TestProxy> {
  return startTestProxy({
    UPSTREAM_URL: upstream.url,
    POLICY_FILE: files.write(name, content),
    MONGODB_URI: uriFor(db),
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: mkdtempSync(join(tmpdir(), 'quotas-')),
  });
}
