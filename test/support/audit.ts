/**
 * Reads the audit journal back as a user would (each line is MongoDB relaxed Extended JSON),
 * and waits for the records of finished exchanges to land.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EJSON } from 'bson';
import type { Journal } from '../../src/audit/journal/journal.ts';
import type { AuditRecord } from '../../src/audit/record/record.ts';
import type { TestProxy } from './proxy.ts';

/**
 * Every complete line of every segment. A line without its newline is still being written (the
 * journal may be appending while a test reads), so it is left for a later read, as the shipper
 * leaves it.
 */
export async function readJournal(dir: string): Promise<AuditRecord[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.ndjson')).sort();
  const records: AuditRecord[] = [];
  for (const file of files) {
    const lines = (await readFile(join(dir, file), 'utf8')).split('\n');
    lines.pop();
    for (const line of lines) if (line !== '') records.push(EJSON.parse(line, { relaxed: true }) as AuditRecord);
  }
  return records;
}

/**
 * Resolves with the next commit of the journal's writer (`Journal.onCommit`), or rejects at the
 * deadline saying what was awaited: the tests wait on the journal's own event, never a poll.
 */
function nextCommit(journal: Journal, deadline: number, what: () => string): { committed: Promise<void>; cancel: () => void } {
  let cancel = (): void => undefined;
  const committed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(what()));
    }, Math.max(0, deadline - Date.now()));
    const off = journal.onCommit(() => {
      clearTimeout(timer);
      off();
      resolve();
    });
    cancel = () => {
      clearTimeout(timer);
      off();
    };
  });
  return { committed, cancel };
}

/** Resolves once the journal is (or becomes) writable, or not, on its own event (`onWritableChange`). */
export function waitForWritable(journal: Journal, writable: boolean, timeoutMs = 5000): Promise<void> {
  if (journal.writable === writable) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`journal not writable=${writable} after ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = journal.onWritableChange((now) => {
      if (now !== writable) return;
      clearTimeout(timer);
      stop();
      resolve();
    });
  });
}

/** Resolves once `count` records have been appended and written, with the records. */
export async function waitForRecords(proxy: TestProxy, count: number, timeoutMs = 10_000): Promise<AuditRecord[]> {
  const journal = proxy.runtime.journal;
  if (journal === null) throw new Error('audit is off in this proxy');
  const deadline = Date.now() + timeoutMs;
  // A record is appended before the batch that writes it commits: each commit is a time to look.
  while (journal.stats.appended < count) {
    await nextCommit(journal, deadline, () => `only ${journal.stats.appended} of ${count} records appended`).committed;
  }
  await journal.flush();
  return readJournal(proxy.config.audit.dir);
}

/** The record of the exchange whose response carried this x-proxy-request-id. */
export async function recordOf(proxy: TestProxy, id: string, timeoutMs = 10_000): Promise<AuditRecord> {
  const journal = proxy.runtime.journal;
  if (journal === null) throw new Error('audit is off in this proxy');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // Listening before reading, so a commit between the read and the wait is not missed.
    const next = nextCommit(journal, deadline, () => `no audit record ${id}`);
    await journal.flush();
    const found = (await readJournal(proxy.config.audit.dir)).find((r) => r._id === id);
    if (found !== undefined) {
      next.cancel();
      return found;
    }
    await next.committed;
  }
}
