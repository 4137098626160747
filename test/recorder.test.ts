// The capture observer's batching: records of ended exchanges are built together after a short
// wait, at once when the backlog is long or durability asks for it, and all of them on flush and
// at shutdown.
// The exchanges are driven through the observer's own taps; the request is a plain object with
// the IncomingMessage members the recorder reads.
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { test } from 'node:test';
import { HeaderRedactor, InstitutionResolver } from '../src/audit/identity.ts';
import type { AuditRecord } from '../src/audit/record.ts';
import { RECORD_BATCH_MS, Recorder, recordBatchMs } from '../src/audit/recorder.ts';
import { newExchange } from '../src/proxy/observer.ts';
import { readJournal } from './support/audit.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream } from './support/upstream.ts';

const BODY = Buffer.from('{"model":"gpt-4o-mini","input":"hi"}');

function recorder(batchMs: number): { recorder: Recorder; records: AuditRecord[]; failures: unknown[] } {
  const records: AuditRecord[] = [];
  const failures: unknown[] = [];
  const instance = new Recorder({
    maxBodyBytes: 1024,
    batchMs,
    redactor: new HeaderRedactor([]),
    institutions: new InstitutionResolver('x-institution-id', new Map()),
    traceOf: () => null,
    usageInjected: () => false,
    sinks: [(record) => records.push(record)],
    onFailure: (err) => failures.push(err),
  });
  return { recorder: instance, records, failures };
}

function runExchange(observer: Recorder, n: number): void {
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

test('a batch is built once its delay has passed', async () => {
  const { recorder: observer, records } = recorder(20);
  runExchange(observer, 0);
  await new Promise((resolve) => setTimeout(resolve, 60));
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

/** Resolves once the proxy's server has finished its next response (node:http's own channel). */
function responseFinished(): Promise<void> {
  return new Promise((resolve) => {
    const onFinish = (): void => {
      unsubscribe('http.server.response.finish', onFinish);
      resolve();
    };
    subscribe('http.server.response.finish', onFinish);
  });
}

/**
 * Runs two exchanges through a real proxy with the journal on, then calls `check` as soon as the
 * second has ended. The response's 'close', which ends the exchange, follows node:http's finish
 * message on the next tick, and the setImmediate after it runs before the event loop reaches its
 * timers: at `check`, a record waiting for a batch timer is still waiting, however slow the machine.
 */
async function afterTwoExchanges(
  env: Record<string, string>,
  check: (proxy: TestProxy, dir: string, ids: (string | null)[]) => Promise<void>,
): Promise<void> {
  const upstream = await startUpstream();
  const dir = await mkdtemp(join(tmpdir(), 'recorder-test-'));
  const proxy = await startTestProxy({ ...env, UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: dir });
  try {
    const ids: (string | null)[] = [];
    for (let n = 0; n < 2; n++) {
      const finished = responseFinished();
      const res = await fetch(`${proxy.url}/v1/models`);
      await res.arrayBuffer();
      ids.push(res.headers.get('x-proxy-request-id'));
      await finished;
    }
    await nextTurn();
    await check(proxy, dir, ids);
  } finally {
    await proxy.close();
    await upstream.close();
    await rm(dir, { recursive: true, force: true });
  }
}

test('a record still waiting for its batch when the proxy shuts down reaches the journal', async () => {
  await afterTwoExchanges({}, async (proxy, dir, ids) => {
    // `appended` counts as records reach the journal, before any I/O: the second is still waiting.
    assert.ok((proxy.runtime.journal?.stats.appended ?? 0) < 2, 'the second record was not built yet');
    // Straight to the runtime, while the record still waits for its batch (drain would give it time).
    await proxy.runtime.close();
    assert.deepEqual((await readJournal(dir)).map((r) => r._id), ids);
  });
});

test('with AUDIT_FSYNC=always a record is in the journal as soon as its exchange has ended', async () => {
  await afterTwoExchanges({ AUDIT_FSYNC: 'always' }, async (proxy, dir, ids) => {
    assert.equal(proxy.runtime.journal?.stats.appended, 2, 'appended as its exchange ended, not after a batch delay');
    await proxy.runtime.journal?.flush();
    assert.deepEqual((await readJournal(dir)).map((r) => r._id), ids);
  });
});
