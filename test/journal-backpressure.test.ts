/**
 * Records are never dropped while the disk writes: the journal tells the recorder to wait when
 * lines pile up (backpressure), and what waits meanwhile is bounded by the memory budget.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { Journal } from '../src/audit/journal/journal.ts';
import type { AuditRecord } from '../src/audit/record/record.ts';
import { MemoryBudget } from '../src/memory-budget.ts';
import { readJournal, waitForRecords } from './support/audit.ts';
import { until } from './support/net.ts';
import { startTestProxy } from './support/proxy.ts';
import { installSlowDisk } from './support/slow-disk.ts';
import { bareRecord } from './support/records.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';
import { removeTempDirs, tempDir } from './support/temp-dirs.ts';

const MIB = 1024 * 1024;
let upstream: Upstream;

before(async () => {
  upstream = await startUpstream();
});

after(async () => {
  await upstream.close();
  await removeTempDirs();
});

function record(n: number, text: string): AuditRecord {
  const captured = { contentType: 'text/plain', bytes: text.length, body: text, bodyEncoding: 'text', sha256: '00'.repeat(32) } as const;
  return bareRecord(`bp-${n}`, captured, new Date(Date.UTC(2025, 0, 1)));
}

describe('journal backpressure', () => {
  test('past its high-water mark the journal asks writers to wait, and lets them go as the disk catches up', async () => {
    const disk = installSlowDisk();
    const budget = new MemoryBudget(64 * MIB);
    const dir = await tempDir('journal-backpressure-test-');
    try {
      const journal = await Journal.open({
        dir, segmentBytes: 4 * MIB, fsync: 'interval', log: () => undefined, highWaterBytes: 64 * 1024, memory: budget.account('journal'),
      });
      let n = 0;
      while (journal.needsDrain !== true && n < 100) journal.append(record(n++, 'w'.repeat(10 * 1024)));
      assert.equal(journal.needsDrain, true, 'the journal asks to wait once 64 KiB are pending');
      assert.ok(n < 10, `asked after ${n} records of 10 KiB`);
      assert.equal(budget.stats.held.journal, journal.stats.pendingBytes, 'pending lines are counted in the budget');
      let drained = false;
      const waited = journal.drained().then(() => (drained = true));
      await until(() => disk.waiting > 0, 5000, 'the first write to reach the disk');
      assert.equal(drained, false, 'no room while the disk takes nothing');
      disk.open();
      await waited;
      await journal.close();
      assert.equal(journal.stats.dropped, 0);
      assert.equal(journal.stats.committed, n);
      assert.equal(budget.stats.usedBytes, 0, 'every line given back to the budget once written');
      assert.equal((await readJournal(dir)).length, n);
    } finally {
      disk.restore();
    }
  });

  test('70 concurrent requests with 2 MiB records on a stalled disk: none dropped, all written once it moves, memory bounded', async (t) => {
    const disk = installSlowDisk();
    const dir = await tempDir('journal-backpressure-test-');
    const budgetBytes = 32 * MIB;
    const proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, AUDIT_ENABLED: 'true', AUDIT_DIR: dir, MEMORY_BUDGET_BYTES: String(budgetBytes) });
    try {
      const journal = proxy.runtime.journal as Journal;
      // 1 MiB of quotes: a kilobyte on the wire, decoded for the record, escaped to 2 MiB in its line.
      const text = Buffer.alloc(MIB, '"');
      const wire = gzipSync(text);
      const count = 70;
      const ids = await Promise.all(
        Array.from({ length: count }, async () => {
          const res = await request(`${proxy.url}/sink`, {
            method: 'POST',
            body: wire,
            headers: { 'content-type': 'text/plain', 'content-encoding': 'gzip' },
          });
          await res.body.dump();
          assert.equal(res.statusCode, 200, 'answered while the disk is stalled');
          return String(res.headers['x-proxy-request-id']);
        }),
      );
      // Records are built until the journal asks to wait (without backpressure: all of them); the
      // bodies still being decoded meanwhile find the budget spent.
      const stalled = (): boolean => journal.needsDrain === true && (proxy.runtime.memory?.stats.refused.capture ?? 0) > 0;
      await until(() => journal.stats.appended === count || stalled(), 10_000, 'the journal to fill');
      const pendingWhileStalled = journal.stats.pendingBytes;
      const usedWhileStalled = proxy.runtime.memory?.stats.usedBytes;

      disk.open();
      const records = await waitForRecords(proxy, count);
      assert.equal(journal.stats.dropped, 0, 'no record dropped while the disk writes');
      assert.deepEqual(records.map((r) => r._id).sort(), [...ids].sort(), 'every exchange has its record, once');

      // Lines waiting for the disk stayed near the high-water mark (a quarter of the budget), past
      // it by the records already being built when the journal asked to wait.
      const line = 2 * MIB + 4096;
      assert.ok(pendingWhileStalled <= budgetBytes / 4 + 9 * line, `pending while stalled: ${pendingWhileStalled}`);
      assert.ok(usedWhileStalled !== undefined && usedWhileStalled <= budgetBytes + 9 * line, `held while stalled: ${usedWhileStalled}`);
      const kept = records.filter((r) => r.request.bodyEncoding === 'text');
      const omitted = records.filter((r) => r.request.bodyEncoding === 'omitted');
      assert.equal(kept.length + omitted.length, count);
      t.diagnostic(`while stalled: ${pendingWhileStalled} bytes of lines pending, ${usedWhileStalled} held; kept ${kept.length}, omitted ${omitted.length}`);
      assert.ok(kept.length > 0 && omitted.length > 0, `kept ${kept.length}, omitted ${omitted.length}`);
      for (const r of kept) assert.equal(r.request.body, text.toString());
      for (const r of omitted) {
        assert.equal(r.request.omittedReason, 'memory_budget');
        assert.equal(r.request.bytes, wire.length);
      }
      assert.equal(proxy.runtime.memory.stats.usedBytes, 0, 'everything given back once written');
      assert.ok(proxy.runtime.memory.stats.refused.capture >= omitted.length);
    } finally {
      disk.restore();
      await proxy.close();
    }
  });
});
