/**
 * Child process for the crash test: appends numbered records as fast as it can (fsync `always`)
 * and reports each committed count on stdout until it is killed.
 */
import { Journal } from '../../src/audit/journal/journal.ts';
import type { AuditRecord } from '../../src/audit/record/record.ts';
import { bareRecord } from './records.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: journal-writer.ts <dir>');

function record(n: number): AuditRecord {
  return bareRecord(`crash-${n}`, { contentType: 'application/json', body: { n, padding: 'x'.repeat(700) }, bodyEncoding: 'json' }, new Date());
}

const journal = await Journal.open({ dir, segmentBytes: 64 * 1024, fsync: 'always' });
journal.onCommit(() => process.stdout.write(`committed ${journal.stats.committed}\n`));
let next = 0;
const burst = (): void => {
  for (let i = 0; i < 20; i++) journal.append(record(next++));
  setImmediate(burst);
};
burst();
