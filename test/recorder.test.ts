// The capture observer's batching: records of ended exchanges are built together after a short
// wait, at once when the backlog is long or durability asks for it, and all of them on flush and
// at shutdown; never faster than the journal takes them (backpressure).
// The exchanges are driven through the observer's own taps; the request is a plain object with
// the IncomingMessage members the recorder reads.
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { test } from 'node:test';
import type { AuditRecord } from '../src/audit/record/record.ts';
import { recordBatchMs } from '../src/audit/record/recorder.ts';
import { RECORD_BATCH_MS } from '../src/capture/backlog.ts';
import type { CaptureObserver } from '../src/capture/capture-observer.ts';
import { MemoryBudget } from '../src/memory-budget.ts';
import { newExchange } from '../src/proxy/observer.ts';
import { readJournal } from './support/audit.ts';
import { recordingObserver } from './support/recording.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';

const BODY = Buffer.from('{"model":"gpt-4o-mini","input":"hi"}');

function recorder(batchMs: number): { recorder: CaptureObserver; records: AuditRecord[]; failures: unknown[] } {
  const records: AuditRecord[] = [];
  const failures: unknown[] = [];
  const instance = recordingObserver({ batchMs, sinks: [(record) => records.push(record)], onFailure: (err) => failures.push(err) });
  return { recorder: instance, records, failures };
}

function runExchange(observer: CaptureObserver, n: number): void {
  const headers = { 'content-type': 'application/json', 'content-length': String(BODY.length) };
  const req = {
    method: 'POST',
    url: `/v1/embeddings?n=${n}`,
    headers,
    rawHeaders: Object.entries(headers).flat(),
    socket: { remoteAddress: '127.0.0.1' },
  } as unknown as IncomingMessage;
  const exchange = newExchange(req, 'http');
  const tap = observer.start(exchange);
  tap.requestChunk?.(BODY);
  exchange.status = 200;
  tap.responseHead?.(200, { 'content-type': 'application/json' });
  tap.responseChunk?.(Buffer.from('{"object":"list","data":[]}'));
  exchange.endHr = performance.now();
  tap.end?.();
}

test('records wait for their batch; close builds them all', async () => {
  const { recorder: observer, records, failures } = recorder(60_000);
  for (let n = 0; n < 3; n++) runExchange(observer, n);
  await nextTurn();
  assert.equal(records.length, 0, 'still waiting for the batch');
  await observer.close();
  assert.deepEqual(records.map((r) => r.request.query), ['n=0', 'n=1', 'n=2']);
  assert.equal(records[0]?.request.bodyEncoding, 'json');
  assert.deepEqual(failures, []);
});

test('a batch is built once its delay has passed', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { recorder: observer, records } = recorder(20);
  runExchange(observer, 0);
  t.mock.timers.tick(19);
  await nextTurn();
  assert.equal(records.length, 0, 'not before its delay');
  t.mock.timers.tick(1);
  await nextTurn();
  assert.equal(records.length, 1);
});

test('a long backlog is built at once, whatever its age', async () => {
  const { recorder: observer, records } = recorder(60_000);
  for (let n = 0; n < 256; n++) runExchange(observer, n);
  await nextTurn();
  assert.equal(records.length, 256);
});

test('with no batching (fsync always) each record is built as its exchange ends', async () => {
  const { recorder: observer, records } = recorder(0);
  runExchange(observer, 0);
  await nextTurn();
  assert.equal(records.length, 1);
});

test('records wait only while the journal does not fsync each one', () => {
  assert.equal(recordBatchMs('always'), 0);
  assert.equal(recordBatchMs('interval'), RECORD_BATCH_MS);
  assert.equal(recordBatchMs('never'), RECORD_BATCH_MS);
  assert.equal(recordBatchMs(null), RECORD_BATCH_MS);
});

test('after close, what waited is built and each later record is built at once', async () => {
  const { recorder: observer, records } = recorder(60_000);
  runExchange(observer, 0);
  await observer.close();
  assert.equal(records.length, 1);
  runExchange(observer, 1);
  await nextTurn();
  assert.equal(records.length, 2);
});

/**
 * Calls `onEnd` as the next exchange of the proxy listening on `port` ends, from its response's
 * 'close' (node:http's finish message names the response; this listener comes after the proxy's
 * own, which ends the exchange). The upstream emulator's server, in this process too, is told
 * apart by its port. The client may read the response only later, while a batch timer runs:
 * anything that must happen before such a timer has to happen here.
 */
function onNextExchangeEnd(port: number, onEnd: () => void): Promise<void> {
  return new Promise((resolve) => {
    const onFinish = (message: unknown): void => {
      const { response, socket } = message as { response: ServerResponse; socket: Socket };
      if (socket.localPort !== port) return;
      unsubscribe('http.server.response.finish', onFinish);
      response.once('close', () => {
        onEnd();
        resolve();
      });
    };
    subscribe('http.server.response.finish', onFinish);
  });
}

/**
 * Runs two exchanges through a real proxy with the journal on, calling `atSecondEnd` as the
 * second ends (see onNextExchangeEnd), then `check` once the client has both responses.
 */
async function twoExchanges(
  env: Record<string, string>,
  atSecondEnd: (proxy: TestProxy) => void,
  check: (proxy: TestProxy, dir: string, ids: (string | null)[]) => Promise<void>,
): Promise<void> {
  const upstream = await startUpstream();
  const dir = await mkdtemp(join(tmpdir(), 'recorder-test-'));
  const proxy = await startTestProxy({ ...env, UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: dir });
  try {
    const ids: (string | null)[] = [];
    for (let n = 0; n < 2; n++) {
      const ended = onNextExchangeEnd(Number(new URL(proxy.url).port), n === 1 ? () => atSecondEnd(proxy) : () => {});
      // Uncompressed: a gzip body would be decoded for the record on zlib's threads, not at once.
      const res = await fetch(`${proxy.url}/v1/models`, { headers: { 'accept-encoding': 'identity' } });
      await res.arrayBuffer();
      ids.push(res.headers.get('x-proxy-request-id'));
      await ended;
    }
    await check(proxy, dir, ids);
  } finally {
    await proxy.close();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }
}

test('a record still waiting for its batch when the proxy shuts down reaches the journal', async () => {
  let appendedAtEnd = -1;
  let closing: Promise<void> | null = null;
  await twoExchanges(
    {},
    (proxy) => {
      // `appended` counts records as they reach the journal; the runtime closes before any timer.
      appendedAtEnd = proxy.runtime.journal?.stats.appended ?? -1;
      closing = proxy.runtime.close();
    },
    async (_proxy, dir, ids) => {
      assert.ok(appendedAtEnd >= 0 && appendedAtEnd < 2, `the second record was waiting (appended: ${appendedAtEnd})`);
      await closing;
      assert.deepEqual((await readJournal(dir)).map((r) => r._id), ids);
    },
  );
});

test('with AUDIT_FSYNC=always a record is in the journal as soon as its exchange has ended', async () => {
  let appendedNextTurn = -1;
  await twoExchanges(
    { AUDIT_FSYNC: 'always' },
    // From the 'close' (run from the poll phase), setImmediate comes before the loop's timers.
    (proxy) => setImmediate(() => (appendedNextTurn = proxy.runtime.journal?.stats.appended ?? -1)),
    async (proxy, dir, ids) => {
      await nextTurn();
      assert.equal(appendedNextTurn, 2, 'appended as its exchange ended, not after a batch delay');
      await proxy.runtime.journal?.flush();
      assert.deepEqual((await readJournal(dir)).map((r) => r._id), ids);
    },
  );
});

test('backpressure: no record is built while the sink asks to wait; all are, in order, once it has room', async () => {
  const records: AuditRecord[] = [];
  const budget = new MemoryBudget(1024 * 1024);
  // A sink that takes two records, then asks to wait until the test lets it drain.
  let room = 2;
  let drain: () => void = () => undefined;
  const sink = {
    get needsDrain(): boolean {
      return room <= 0;
    },
    drained: (): Promise<void> => new Promise<void>((resolve) => (drain = resolve)),
  };
  const observer = recordingObserver({
    batchMs: 0,
    sinks: [(record) => (records.push(record), room--)],
    onFailure: (err) => assert.fail(String(err)),
    memory: budget.account('capture'),
    backpressure: sink,
  });
  for (let n = 0; n < 10; n++) runExchange(observer, n);
  await nextTurn();
  // Those already being built when the sink filled up still reach it; no other starts.
  const built = records.length;
  assert.ok(built >= 2 && built < 10, `built ${built}`);
  for (let n = 10; n < 15; n++) runExchange(observer, n);
  await nextTurn();
  await nextTurn();
  assert.equal(records.length, built, 'nothing built while the sink asks to wait');
  assert.equal(budget.stats.held.capture, (15 - built) * (BODY.length + 27), 'the waiting records still hold their bodies');
  room = 100;
  drain();
  await observer.close();
  assert.deepEqual(records.map((r) => r.request.query), Array.from({ length: 15 }, (_, n) => `n=${n}`));
  assert.equal(budget.stats.usedBytes, 0, 'every body given back once its record was handed on');
});
