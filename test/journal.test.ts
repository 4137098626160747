/**
 * The audit journal: round trip, rotation, group commit, fsync policies, crash recovery,
 * retention, and staying up on a full or unwritable disk.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, open, readFile, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { EJSON } from 'bson';
import { Journal, listSegments, segmentSequence } from '../src/audit/journal/journal.ts';
import type { JournalOptions } from '../src/audit/journal/journal.ts';
import { recordLine } from '../src/audit/journal/journal-line.ts';
import { enforceRetention, segmentPath } from '../src/audit/journal/journal-segments.ts';
import { JSON_TEXT, type AuditRecord } from '../src/audit/record/record.ts';
import { waitForWritable } from './support/audit.ts';
import { chatRecord } from './support/records.ts';
import { removeTempDirs, tempDir } from './support/temp-dirs.ts';


/** A record's journal line, embedded JSON bodies included, as text. */
function lineOf(rec: AuditRecord): string {
  return recordLine(rec).pieces.map((piece) => piece.toString()).join('');
}
after(async () => {
  await removeTempDirs();
});

function record(n: number, body: unknown = { model: 'gpt-4o-mini', n }): AuditRecord {
  return chatRecord(n, { requestBody: body });
}

/** A record of about 2 KiB, like a short chat completion with its answer. */
function realisticRecord(n: number): AuditRecord {
  const rec = record(n, {
    model: 'gpt-4o-mini',
    messages: [
      { role: 'system', content: 'You are a helpful assistant for a university library.' },
      { role: 'user', content: `Question ${n}: summarise the borrowing rules for graduate students. `.repeat(3) },
    ],
    temperature: 0.2,
  });
  const answer = 'Graduate students may borrow… '.repeat(12);
  rec.response.body = { id: `chatcmpl-${n}`, choices: [{ message: { content: answer } }] };
  return rec;
}

async function openJournal(opts: Partial<JournalOptions> & { dir: string }, logs: string[] = []): Promise<Journal> {
  return Journal.open({ segmentBytes: 1024 * 1024, fsync: 'interval', log: (msg) => logs.push(msg), ...opts });
}

async function readLines(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), `${path} ends with a full line`);
  return text.split('\n').slice(0, -1);
}

async function readRecords(dir: string): Promise<AuditRecord[]> {
  const records: AuditRecord[] = [];
  for (const path of await listSegments(dir)) {
    for (const line of await readLines(path)) records.push(EJSON.parse(line) as AuditRecord);
  }
  return records;
}

/** Resolves when a log line containing `text` arrives; fails after `timeoutMs`. */
function logged(logs: string[], text: string, timeoutMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no log line with "${text}" after ${timeoutMs} ms: ${logs.join(' | ')}`)), timeoutMs);
    const push = logs.push.bind(logs);
    logs.push = (...lines: string[]): number => {
      if (lines.some((line) => line.includes(text))) {
        clearTimeout(timer);
        resolve();
      }
      return push(...lines);
    };
  });
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('audit journal', () => {
  test('20,000 records come back once each, in order, Dates as Dates, over rotated segments', async () => {
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir, segmentBytes: 256 * 1024 });
    let commits = 0;
    journal.onCommit(() => commits++);
    for (let n = 0; n < 20_000; n++) {
      journal.append(record(n));
      if (n % 500 === 0) await tick();
    }
    await journal.close();

    const records = await readRecords(dir);
    assert.equal(records.length, 20_000);
    records.forEach((rec, n) => {
      assert.equal(rec._id, `req-${n}`);
      assert.ok(rec.startedAt instanceof Date);
      assert.equal(rec.startedAt.getTime(), record(n).startedAt.getTime());
    });
    assert.deepEqual(records[123], record(123));

    const segments = await listSegments(dir);
    assert.ok(segments.length > 5, `${segments.length} segments`);
    const sequences = segments.map(segmentSequence);
    assert.deepEqual(sequences, [...sequences].sort((a, b) => a - b));
    assert.equal(new Set(sequences).size, sequences.length);
    for (const path of segments) assert.ok((await stat(path)).size <= 256 * 1024);

    const stats = journal.stats;
    assert.equal(stats.committed, 20_000);
    assert.equal(stats.dropped, 0);
    assert.equal(stats.appended, 20_000);
    assert.ok(stats.batches < stats.appended / 10, `${stats.batches} write calls for ${stats.appended} appends`);
    assert.equal(commits, stats.batches);
    assert.ok(stats.lastCommitAt !== null);
  });

  test('rotates only at line boundaries; a record larger than a segment goes in whole', async () => {
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir, segmentBytes: 4096 });
    for (let n = 0; n < 30; n++) journal.append(record(n, { text: 'x'.repeat(n === 10 ? 10_000 : 300) }));
    await journal.close();

    const records = await readRecords(dir);
    assert.deepEqual(records.map((rec) => rec._id), Array.from({ length: 30 }, (_, n) => `req-${n}`));
    for (const path of await listSegments(dir)) {
      const lines = await readLines(path);
      const size = (await stat(path)).size;
      assert.ok(size <= 4096 || lines.length === 1, `${path}: ${size} bytes in ${lines.length} lines`);
    }
  });

  test('group commit: appends made while a write is in flight share the next write', async () => {
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir, fsync: 'always', segmentBytes: 16 * 1024 * 1024 });
    for (let n = 0; n < 1000; n++) journal.append(record(n));
    await journal.flush();
    assert.equal(journal.stats.batches, 1, 'a synchronous burst is one write');

    journal.append(record(1000));
    await tick(); // the writer has taken that record: its write is in flight
    for (let n = 1001; n < 1100; n++) journal.append(record(n));
    await journal.close();
    assert.deepEqual(
      { batches: journal.stats.batches, committed: journal.stats.committed },
      { batches: 3, committed: 1100 },
      'the 99 appends made during the write share the next one',
    );
    assert.deepEqual((await readRecords(dir)).map((rec) => rec._id), Array.from({ length: 1100 }, (_, n) => `req-${n}`));
  });

  test('a record that cannot be serialized is dropped and counted; append does not throw', async () => {
    const dir = await tempDir('audit-journal-test-');
    const logs: string[] = [];
    const journal = await openJournal({ dir }, logs);
    const throwing = {
      get x(): unknown {
        throw new Error('a getter that throws');
      },
    };
    journal.append(record(0, throwing));
    journal.append(record(1));
    await journal.close();
    assert.deepEqual({ dropped: journal.stats.dropped, committed: journal.stats.committed }, { dropped: 1, committed: 1 });
    assert.equal(logs.length, 1);
  });

  test('fsync always: every batch is fsynced before it counts as committed', async () => {
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir, fsync: 'always' });
    const fsyncsAtCommit: number[] = [];
    journal.onCommit(() => fsyncsAtCommit.push(journal.stats.fsyncs));
    for (let round = 0; round < 10; round++) {
      journal.append(record(round));
      await journal.flush();
    }
    assert.deepEqual(fsyncsAtCommit, Array.from({ length: 10 }, (_, i) => i + 1));
    await journal.close();
  });

  test('fsync interval: at most one fsync per interval, and flush makes everything durable', async (t) => {
    // The clock is mocked (the sync timer and the Date.now() it is measured with); the disk is real.
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: Date.now() });
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir, fsync: 'interval', fsyncIntervalMs: 50 });
    const committed = (): Promise<void> => new Promise((resolve) => {
      const off = journal.onCommit(() => {
        off();
        resolve();
      });
    });
    // A record every 10 ms for 400 ms. The writer syncs before it writes, so once a batch has
    // committed, the fsync the timer asked for before it has been done.
    for (let elapsed = 0; elapsed <= 400; elapsed += 10) {
      const landed = committed();
      journal.append(record(0));
      await landed;
      t.mock.timers.tick(10);
    }
    const landed = committed();
    journal.append(record(0));
    await landed;
    const { fsyncs, batches } = journal.stats;
    assert.ok(fsyncs >= 400 / 50, `${fsyncs} fsyncs: one each interval`);
    assert.ok(fsyncs <= 400 / 50 + 2, `${fsyncs} fsyncs: at most one each interval`);
    assert.equal(batches, 42);
    journal.append(record(1));
    await journal.flush();
    assert.ok(journal.stats.fsyncs > fsyncs, 'flush fsyncs what was written since the last fsync');
    await journal.close();
  });

  test('fsync never: no fsync until close', async () => {
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir, fsync: 'never' });
    for (let n = 0; n < 100; n++) journal.append(record(n));
    await journal.flush();
    assert.equal(journal.stats.fsyncs, 0);
    assert.equal(journal.stats.committed, 100);
    await journal.close();
    assert.equal(journal.stats.fsyncs, 1);
    assert.equal((await readRecords(dir)).length, 100);
  });

  test('a torn last line is cut on open, counted and logged; appends go to a new segment', async () => {
    const dir = await tempDir('audit-journal-test-');
    const first = await openJournal({ dir });
    for (let n = 0; n < 100; n++) first.append(record(n));
    await first.close();
    const [last] = (await listSegments(dir)).slice(-1);
    assert.ok(last !== undefined);
    const sizeBefore = (await stat(last)).size;
    await appendFile(last, EJSON.stringify(record(100)).slice(0, 150));

    const logs: string[] = [];
    const second = await openJournal({ dir }, logs);
    assert.equal(second.stats.tornLinesSkipped, 1);
    assert.ok(logs.some((msg) => msg.includes('torn') && msg.includes(last)), logs.join('\n'));
    assert.equal((await stat(last)).size, sizeBefore);
    assert.ok(second.activeSegment !== null && segmentSequence(second.activeSegment) > segmentSequence(last));
    for (let n = 100; n < 150; n++) second.append(record(n));
    await second.close();
    assert.deepEqual((await readRecords(dir)).map((rec) => rec._id), Array.from({ length: 150 }, (_, n) => `req-${n}`));
  });

  test('SIGKILL while appending with fsync always: every line parses, no holes, nothing committed lost', async () => {
    const dir = await tempDir('audit-journal-test-');
    const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'support/journal-writer.ts'), dir], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let committed = 0;
    for await (const line of createInterface({ input: child.stdout })) {
      committed = Number(line.split(' ')[1]);
      if (committed >= 3000) break;
    }
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    assert.ok(committed >= 3000, 'the writer committed records before it was killed');

    const journal = await openJournal({ dir });
    await journal.close();
    const ids = (await readRecords(dir)).map((rec) => rec._id);
    assert.ok(ids.length >= committed, `${ids.length} records on disk, ${committed} reported committed`);
    ids.forEach((id, n) => assert.equal(id, `crash-${n}`));
    assert.ok((await listSegments(dir)).length > 2, 'the writer rotated');
  });

  test('retention by bytes deletes the oldest segments the shipper lets go', async () => {
    const dir = await tempDir('audit-journal-test-');
    const writer = await openJournal({ dir, segmentBytes: 4096 });
    for (let n = 0; n < 100; n++) writer.append(record(n));
    await writer.close();
    const before = await listSegments(dir);
    assert.ok(before.length > 10);
    const kept = before[1];
    assert.ok(kept !== undefined);

    const canDelete = (path: string): boolean => path !== kept;
    const journal = await openJournal({ dir, segmentBytes: 4096, retentionBytes: 20_000, canDelete });
    const after = await listSegments(dir);
    const sizes = await Promise.all(after.map(async (path) => (await stat(path)).size));
    assert.ok(sizes.reduce((a, b) => a + b, 0) <= 20_000);
    assert.ok(after.includes(kept), 'a segment the shipper has not shipped stays');
    assert.ok(!after.includes(before[0] ?? ''), 'the oldest shipped segment went');
    assert.deepEqual(after.slice(-3, -1), before.slice(-2), 'the newest segments stay');
    assert.equal(journal.stats.segments, after.length);
    await journal.close();
  });

  test('retention by days goes by mtime, respects canDelete and never deletes the active segment', async () => {
    const dir = await tempDir('audit-journal-test-');
    const writer = await openJournal({ dir, segmentBytes: 4096 });
    for (let n = 0; n < 50; n++) writer.append(record(n));
    await writer.close();
    const before = await listSegments(dir);
    const old = new Date(Date.now() - 10 * 86_400_000);
    for (const path of before.slice(0, 3)) await utimes(path, old, old);

    const journal = await openJournal({ dir, retentionDays: 7, canDelete: (path) => path !== before[0] });
    assert.deepEqual((await listSegments(dir)).slice(0, -1), [before[0], ...before.slice(3)]);
    const active = journal.activeSegment;
    assert.ok(active !== null);
    await utimes(active, old, old);
    const policy = { retentionDays: 7, retentionBytes: 0, canDelete: () => true };
    assert.ok(!(await enforceRetention(dir, policy, active)).includes(active));
    assert.deepEqual(await listSegments(dir), [active]);
    await journal.close();
  });

  test('an active segment that fails with ENOSPC (/dev/full): records dropped, logged once, recovered', async (t) => {
    if (!existsSync('/dev/full')) {
      t.skip('no /dev/full on this system');
      return;
    }
    const dir = await tempDir('audit-journal-test-');
    const logs: string[] = [];
    const journal = await openJournal({ dir, segmentBytes: 4096, fsync: 'always' }, logs);
    const changes: boolean[] = [];
    journal.onWritableChange((writable) => changes.push(writable));
    assert.ok(journal.activeSegment !== null);
    await symlink('/dev/full', segmentPath(dir, segmentSequence(journal.activeSegment) + 1));

    for (let n = 0; n < 40; n++) journal.append(record(n, { text: 'y'.repeat(400) }));
    await journal.flush();
    assert.equal(journal.writable, false);
    for (let n = 0; n < 10; n++) journal.append(record(100 + n));
    const { committed, dropped } = journal.stats;
    assert.ok(committed > 0 && dropped > 0);
    assert.equal(committed + dropped, 50);
    assert.equal(logs.filter((msg) => msg.includes('ENOSPC')).length, 1, logs.join('\n'));

    await waitForWritable(journal, true);
    assert.deepEqual(changes, [false, true]);
    journal.append(record(200));
    await journal.close();
    const ids = (await readRecords(dir)).map((rec) => rec._id);
    assert.equal(ids.length, committed + 1);
    assert.equal(ids.at(-1), 'req-200');
  });

  test('a journal directory that cannot be created (ENOTDIR): open resolves unwritable, recovers later', async () => {
    const parent = await tempDir('audit-journal-test-');
    const blocker = join(parent, 'not-a-dir');
    await writeFile(blocker, 'x');
    const logs: string[] = [];
    const journal = await openJournal({ dir: join(blocker, 'journal') }, logs);
    assert.equal(journal.writable, false);
    assert.equal(journal.activeSegment, null);
    assert.ok(logs.some((msg) => msg.includes('ENOTDIR')), logs.join('\n'));
    journal.append(record(1));
    assert.equal(journal.stats.dropped, 1);

    await rm(blocker);
    await mkdir(blocker);
    await waitForWritable(journal, true);
    journal.append(record(2));
    await journal.close();
    assert.deepEqual((await readRecords(join(blocker, 'journal'))).map((rec) => rec._id), ['req-2']);
  });

  test('disk full on a 256 KiB tmpfs: writable goes false, drops are counted, space freed, writes resume', async (t) => {
    const dir = await tempDir('audit-journal-test-');
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir], { stdio: 'pipe' });
    } catch (err) {
      t.skip(`cannot mount a tmpfs here (needs root on Linux): ${(err as Error).message.split('\n')[0]}`);
      return;
    }
    const journal = await openJournal({ dir, segmentBytes: 64 * 1024, fsync: 'always' }, []);
    t.after(async () => {
      await journal.close();
      execFileSync('umount', [dir]);
    });
    for (let n = 0; n < 5; n++) journal.append(record(n));
    await journal.flush();
    const filler = join(dir, 'filler');
    const fh = await open(filler, 'w');
    await fh.write(Buffer.alloc(512 * 1024)).catch(() => undefined);
    await fh.close();

    // The first batch may be half written into the segment's last page: it must be cut off again.
    for (let n = 5; n < 25; n++) journal.append(record(n, { text: 'z'.repeat(2000) }));
    await journal.flush();
    assert.equal(journal.writable, false);
    assert.deepEqual({ committed: journal.stats.committed, dropped: journal.stats.dropped }, { committed: 5, dropped: 20 });

    await rm(filler);
    await waitForWritable(journal, true);
    for (let n = 25; n < 35; n++) journal.append(record(n));
    await journal.close();
    assert.equal(journal.stats.committed, 15);
    const ids = (await readRecords(dir)).map((rec) => rec._id);
    assert.deepEqual(ids, [0, 1, 2, 3, 4, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34].map((n) => `req-${n}`));
  });
  test('its directory deleted while writing: noticed, logged, counted, and the next records land in it made again', async () => {
    const dir = join(await tempDir('audit-journal-test-'), 'journal');
    const logs: string[] = [];
    const reopened = logged(logs, 'gone from the directory');
    const journal = await Journal.open({ dir, segmentBytes: 1024 * 1024, fsync: 'interval', checkIntervalMs: 20, log: (msg) => logs.push(msg) });
    try {
      for (let n = 0; n < 5; n++) journal.append(record(n));
      await journal.flush();
      const before = journal.activeSegment;
      await rm(dir, { recursive: true, force: true });
      journal.append(record(5)); // into the unlinked segment, most likely: lost with it
      await reopened;
      assert.equal(journal.stats.reopened, 1);
      assert.equal(journal.writable, true);
      assert.notEqual(journal.activeSegment, before);
      assert.equal(existsSync(journal.activeSegment ?? ''), true, 'the new segment is in the directory');
      for (let n = 6; n < 10; n++) journal.append(record(n));
      await journal.flush();
      const ids = (await readRecords(dir)).map((rec) => rec._id);
      assert.deepEqual(ids.filter((id) => id !== 'req-5'), ['req-6', 'req-7', 'req-8', 'req-9']);
      assert.equal(journal.stats.dropped, 0);
    } finally {
      await journal.close();
    }
  });

  test('its directory cut off (a path component now a file): unwritable, not writing into the void; resumes once it can be made', async () => {
    // The path goes through a symlink, swapped by rename: atomic, so no check can fall in between.
    const base = await tempDir('audit-journal-test-');
    const blocker = join(base, 'blocker');
    await writeFile(blocker, 'not a directory');
    await mkdir(join(base, 'first'));
    const link = join(base, 'link');
    await symlink(join(base, 'first'), link);
    const pointLinkAt = async (target: string): Promise<void> => {
      await symlink(target, join(base, 'next'));
      await rename(join(base, 'next'), link);
    };
    const dir = join(link, 'journal');
    const journal = await Journal.open({ dir, segmentBytes: 1024 * 1024, fsync: 'interval', checkIntervalMs: 20, log: () => undefined });
    try {
      journal.append(record(1));
      await journal.flush();
      await pointLinkAt(blocker);
      await waitForWritable(journal, false);
      assert.equal(journal.stats.reopened, 1);
      await mkdir(join(base, 'second'));
      await pointLinkAt(join(base, 'second'));
      await waitForWritable(journal, true);
      journal.append(record(2));
      await journal.flush();
      assert.deepEqual((await readRecords(dir)).map((rec) => rec._id), ['req-2']);
    } finally {
      await journal.close();
    }
  });
});

describe('audit journal lines', () => {
  test('varied records round-trip through EJSON.parse unchanged', async () => {
    const dir = await tempDir('audit-journal-test-');
    const bodies: unknown[] = [
      { nested: { deep: { deeper: [1, 2.5, -3e-7, 1e21, Number.MAX_SAFE_INTEGER, null, true, 'é'] } } },
      'raw SSE text\ndata: {"a":1}\n\n',
      [{ name: 'file', filename: 'a.wav', contentType: 'audio/wav', bytes: 3, sha256: 'ff' }],
      { unicode: 'Grüße, 日本語, emoji 🎉, rtl עברית, lone surrogate \ud800, control \u0001', 'key.with.dots': 1 },
      { schema: { $schema: 'https://json-schema.org/draft/2020-12/schema', $defs: { a: { $ref: '#/$defs/b' } } } },
      null,
    ];
    const records = bodies.map((body, n) => record(n, body));
    records[1]!.startedAt = new Date(Date.UTC(2025, 5, 1, 12, 0, 0, 0)); // no milliseconds
    records[2]!.endedAt = new Date(-86_400_000); // before 1970: written as $numberLong
    records[3]!.durationMs = 0.000123;
    records[4]!.websocket = {
      messagesIn: 3, messagesOut: 4, bytesIn: 10, bytesOut: 20, closeCode: 1000, closeReason: null, closedBy: 'client',
    };
    const journal = await openJournal({ dir });
    for (const rec of records) journal.append(rec);
    await journal.close();
    assert.deepEqual(await readRecords(dir), records);
    assert.equal(journal.stats.escaped, 0);
  });

  test('a line is exactly what EJSON.stringify writes, whatever the record holds', () => {
    class Point {
      constructor(readonly x = 1) {}
    }
    const nullProto: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
    nullProto.a = 1;
    // eslint-disable-next-line no-sparse-arrays
    const sparse = [1, , 3];
    const bodies: unknown[] = [
      { nested: { deep: { deeper: [1, 2.5, -3e-7, 1e21, 5e-324, -0, 2 ** 53 + 2, null, true, 'é'] } } },
      'raw SSE text\ndata: {"a":1}\n\n',
      { unicode: 'Grüße 🎉 \ud800 \u0001 \u2028 "quoted" back\\slash', '2': 'b', '1': 'a', z: 0 },
      JSON.parse('{"__proto__":{"a":1},"b":2}'),
      nullProto,
      { toJSON: 'a string, not a method' },
      { schema: { $schema: 'https://json-schema.org/draft/2020-12/schema', $defs: {} } },
      { missing: undefined, list: [undefined] },
      sparse,
      [Number.NaN, Number.POSITIVE_INFINITY],
      { when: new Date(Date.UTC(2024, 1, 2)) },
      { big: 12n },
      new Point(),
      { bytes: Buffer.from('hi') },
      null,
    ];
    const records = bodies.map((body, n) => realisticRecord(n)).map((rec, n) => ({ ...rec, request: { ...rec.request, body: bodies[n] } }));
    records[1]!.startedAt = new Date(Date.UTC(2025, 5, 1, 12, 0, 0, 0));
    records[2]!.endedAt = new Date(-86_400_000);
    records[3]!.endedAt = new Date(Date.UTC(10_000, 0, 1));
    records[4]!.endedAt = new Date(Number.NaN);
    records[5]!.websocket = { messagesIn: 1, messagesOut: 2, bytesIn: 3, bytesOut: 4, closeCode: null, closeReason: null, closedBy: null };
    records[6]!.openai = { ...records[6]!.openai!, streamUsageInjected: true };
    for (const [n, rec] of records.entries()) {
      let expected: string;
      try {
        expected = EJSON.stringify(rec, { relaxed: true });
      } catch {
        assert.throws(() => recordLine(rec), `record ${n}`);
        continue;
      }
      assert.equal(lineOf(rec), expected, `record ${n}`);
    }
  });

  test('lines of every size come back whole: many small ones, multi-byte text, larger than an encoding slab', async () => {
    const dir = await tempDir('audit-journal-test-');
    const bodies: unknown[] = [
      ...Array.from({ length: 300 }, (_, n) => ({ n, text: 'ok '.repeat(n) })),
      { text: 'é🎉'.repeat(40_000) },
      { text: 'x'.repeat(300_000) },
      { text: '日本語'.repeat(50_000) },
      ...Array.from({ length: 50 }, (_, n) => ({ n })),
    ];
    const records = bodies.map((body, n) => record(n, body));
    const journal = await openJournal({ dir, segmentBytes: 64 * 1024 * 1024 });
    for (const rec of records) journal.append(rec);
    await journal.close();
    assert.deepEqual(await readRecords(dir), records);
    const [segment] = await listSegments(dir);
    assert.equal((await stat(segment!)).size, journal.stats.appendedBytes);
    const expectedBytes = records.reduce((sum, rec) => sum + Buffer.byteLength(EJSON.stringify(rec, { relaxed: true })) + 1, 0);
    assert.equal(journal.stats.appendedBytes, expectedBytes);
  });

  test('a JSON body goes into the line as the bytes it was parsed from, and reads back as its parsed value', async () => {
    const texts = [
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Grüße 🎉 \\u00e9"}],"temperature":1.0,"n":1e2}',
      '  {"a" : [1, 2.50, -0, 12345678901234567890], "b": {"c": null}}  ',
      '{"dup":1,"dup":2}',
      '["a\\nb", "\\u2028", {"x": "a $ b"}]',
    ];
    const records = texts.map((text, n) => {
      const rec = realisticRecord(n);
      rec.request = { ...rec.request, body: JSON.parse(text) as unknown, [JSON_TEXT]: Buffer.from(text) };
      return rec;
    });
    for (const [n, rec] of records.entries()) {
      const { pieces } = recordLine(rec);
      assert.ok(pieces.includes(rec.request[JSON_TEXT]!), `record ${n}: the body's own bytes are in the line`);
      const back = EJSON.parse(lineOf(rec), { relaxed: true }) as AuditRecord;
      assert.deepEqual(back.request.body, rec.request.body, `record ${n}: the parsed value, -0 and all`);
      const withoutBody = (r: AuditRecord): AuditRecord => ({ ...r, request: { ...r.request, body: null } });
      assert.deepEqual(withoutBody(back), withoutBody(EJSON.parse(EJSON.stringify(rec, { relaxed: true }), { relaxed: true }) as AuditRecord), `record ${n}`);
    }
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir });
    for (const rec of records) journal.append(rec);
    await journal.close();
    assert.deepEqual((await readRecords(dir)).map((rec) => rec.request.body), records.map((rec) => rec.request.body));
  });

  test("the key's hint is written apart, so an ASCII record's line is one-byte text; any order of members still writes EJSON's line", () => {
    const rec = realisticRecord(1);
    // Its bodies' texts go in as bytes (the response's holds a `…` too); its other text is ASCII.
    rec.openai = { ...rec.openai!, outputText: 'Hello' };
    rec.request = { ...rec.request, [JSON_TEXT]: Buffer.from(JSON.stringify(rec.request.body)) };
    rec.response = { ...rec.response, [JSON_TEXT]: Buffer.from(JSON.stringify(rec.response.body)) };
    const apiKeyText = JSON.stringify(rec.apiKey);
    const { pieces } = recordLine(rec);
    assert.ok(pieces.includes(apiKeyText), 'the apiKey member is a piece of its own');
    const others = pieces.filter((piece): piece is string => typeof piece === 'string' && piece !== apiKeyText);
    assert.ok(others.every((piece) => /^[\x20-\x7e]*$/.test(piece)), 'the rest of the text is ASCII');
    const { apiKey, request, response, ...rest } = rec;
    const reordered = [
      { ...rest, request, response, apiKey },
      { apiKey, ...rest, request, response },
      { ...rest, apiKey, response, request },
      { ...rec, apiKey: null },
    ] as AuditRecord[];
    for (const [n, r] of reordered.entries()) assert.equal(lineOf(r), EJSON.stringify(r, { relaxed: true }), `variant ${n}`);
  });

  test('a JSON body whose text would not read back the same is serialised from its parsed value', () => {
    const cases: [string, Buffer, unknown][] = [
      ['pretty-printed: a line break would end the journal line', Buffer.from('{\n  "a": 1\r\n}'), { a: 1 }],
      ['not UTF-8: the parser read U+FFFD', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), { a: '\ufffd' }],
      ['a key EJSON would misread', Buffer.from('{"$date":"x"}'), { $date: 'x' }],
      ['a number JSON cannot write', Buffer.from('{"a":1e999}'), { a: Number.POSITIVE_INFINITY }],
      ['a duplicate key whose shadowed value EJSON would misread', Buffer.from('{"a":{"$date":"x"},"a":1}'), { a: 1 }],
      ['the same, with the dollar escaped', Buffer.from('{"a":{"\\u0024date":"x"},"a":1}'), { a: 1 }],
      ['a duplicate key whose shadowed value has a NUL in a key', Buffer.from('{"a":{"x\\u0000y":1},"a":1}'), { a: 1 }],
    ];
    for (const [why, text, body] of cases) {
      const rec = realisticRecord(1);
      rec.request = { ...rec.request, body, [JSON_TEXT]: text };
      assert.deepEqual(recordLine(rec).pieces.filter((piece) => Buffer.isBuffer(piece)), [], why);
      const withoutText = { ...rec, request: { ...rec.request, [JSON_TEXT]: undefined } };
      assert.equal(lineOf(rec), lineOf(withoutText), why);
    }
  });

  test('a record nested too deep for MongoDB (or for JSON.stringify) keeps its JSON bodies as text, not lost', async () => {
    const nested = (depth: number, inner = '1'): string => `${'['.repeat(depth)}${inner}${']'.repeat(depth)}`;
    // Depths count the record as 0 and its request as 1: a body of 98 nested arrays reaches 99.
    const texts = [nested(98), nested(99), nested(20_000), `{"$date":${nested(150)}}`, `[{"$defs":1},${nested(97)}]`, `[{"$defs":1},${nested(98)}]`];
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const records = texts.map((text, n) => {
      const rec = record(n);
      rec.request = { ...rec.request, body: JSON.parse(text) as unknown, [JSON_TEXT]: Buffer.from(text) };
      return rec;
    });
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir });
    for (const rec of records) journal.append(rec);
    journal.append(record(6, circular));
    await journal.close();
    assert.equal(journal.stats.committed, 7);
    assert.equal(journal.stats.dropped, 0);
    assert.equal(journal.stats.bodiesAsText, 5);
    const back = await readRecords(dir);
    for (const n of [0, 4]) {
      assert.equal(back[n]!.request.bodyEncoding, 'json', `record ${n}: 100 levels with the record fit, either way it is written`);
      assert.deepEqual(back[n]!.request.body, records[n]!.request.body);
    }
    for (const n of [1, 2, 3, 5]) {
      assert.equal(back[n]!.request.bodyEncoding, 'text', `record ${n}`);
      assert.equal(back[n]!.request.body, texts[n], `record ${n}`);
      assert.deepEqual({ ...back[n]!, request: null }, { ...records[n]!, request: null }, `record ${n}: the rest as it was`);
    }
    assert.deepEqual([back[6]!.request.bodyEncoding, back[6]!.request.body], ['omitted', null], 'no text to fall back on');
  });

  test('dates are written exactly as EJSON.stringify writes them, across minutes, years and bounds', () => {
    const edges = [0, 1, 999, 1000, 59_999, 60_000, Date.UTC(2024, 1, 29, 23, 59, 59, 999), 253_402_300_799_999, 253_402_300_800_000, -1, -86_400_000];
    const random = Array.from({ length: 2000 }, (_, n) => Math.floor(((n * 7919) % 2000) / 2000 * 253_402_300_800_000) + (n % 1000));
    const rec = realisticRecord(1);
    for (const ms of [...edges, ...random, ...edges]) {
      rec.startedAt = new Date(ms);
      rec.endedAt = new Date(ms + 250);
      assert.equal(lineOf(rec), EJSON.stringify(rec, { relaxed: true }), `date ${ms}`);
    }
  });

  test('user keys Extended JSON would misread are escaped so every line still reads back', async () => {
    const dir = await tempDir('audit-journal-test-');
    const bodies = [
      { $date: '2020-01-01T00:00:00Z', other: 1 },
      { $oid: 'not-hex' },
      { list: [{ $ref: 'coll', $id: 7 }] },
      { $numberLong: 'abc' },
      { _bsontype: 'ObjectId' },
      { 'nul\u0000key': 1 },
      { $regex: 'a.*', $options: 'i' },
      { $price: 5, $ref: '#/x' },
    ];
    const journal = await openJournal({ dir });
    bodies.forEach((body, n) => journal.append(record(n, body)));
    await journal.close();
    assert.equal(journal.stats.escaped, 7);
    assert.equal(journal.stats.committed, bodies.length);
    const back = (await readRecords(dir)).map((rec) => rec.request.body);
    assert.deepEqual(back, [
      { '＄date': '2020-01-01T00:00:00Z', other: 1 },
      { '＄oid': 'not-hex' },
      { list: [{ '＄ref': 'coll', '＄id': 7 }] },
      { '＄numberLong': 'abc' },
      { '＿bsontype': 'ObjectId' },
      { 'nul␀key': 1 },
      { '＄regex': 'a.*', '＄options': 'i' },
      { $price: 5, $ref: '#/x' },
    ]);
  });

  test('throughput with ~2 KiB records and fsync interval (printed, not asserted)', async (t) => {
    const dir = await tempDir('audit-journal-test-');
    const journal = await openJournal({ dir, segmentBytes: 64 * 1024 * 1024, fsync: 'interval' });
    const records = Array.from({ length: 1000 }, (_, n) => realisticRecord(n));
    const total = 40_000;
    const started = performance.now();
    for (let n = 0; n < total; n++) {
      journal.append(records[n % records.length]!);
      if (n % 200 === 199) await tick();
    }
    await journal.flush();
    const seconds = (performance.now() - started) / 1000;
    const { appendedBytes, batches, fsyncs } = journal.stats;
    await journal.close();
    const perRecord = Math.round(appendedBytes / total);
    const serialize = performance.now();
    for (const rec of records) EJSON.stringify(rec, { relaxed: true });
    const microsPerRecord = ((performance.now() - serialize) * 1000) / records.length;
    t.diagnostic(
      `${Math.round(total / seconds)} records/s, ${(appendedBytes / seconds / 1e6).toFixed(1)} MB/s ` +
        `(${perRecord} B/record, ${batches} writes, ${fsyncs} fsyncs, ` +
        `EJSON.stringify ${microsPerRecord.toFixed(1)} µs/record)`,
    );
    assert.equal(journal.stats.committed, total);
  });
});
