/**
 * Reads the audit journal back as a user would (each line is MongoDB relaxed Extended JSON),
 * and waits for the records of finished exchanges to land.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EJSON } from 'bson';
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

/** Resolves once `count` records have been appended and written, with the records. */
export async function waitForRecords(proxy: TestProxy, count: number, timeoutMs = 10_000): Promise<AuditRecord[]> {
  const journal = proxy.runtime.journal;
  if (journal === null) throw new Error('audit is off in this proxy');
  const deadline = Date.now() + timeoutMs;
  while (journal.stats.appended < count) {
    if (Date.now() > deadline) throw new Error(`only ${journal.stats.appended} of ${count} records appended`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await journal.flush();
  return readJournal(proxy.config.audit.dir);
}

/** The record of the exchange whose response carried this x-proxy-request-id. */
export async function recordOf(proxy: TestProxy, id: string, timeoutMs = 10_000): Promise<AuditRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const journal = proxy.runtime.journal;
    await journal?.flush();
    const found = (await readJournal(proxy.config.audit.dir)).find((r) => r._id === id);
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`no audit record ${id}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
