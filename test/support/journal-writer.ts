/**
 * Child process for the crash test: appends numbered records as fast as it can (fsync `always`)
 * and reports each committed count on stdout until it is killed.
 */
import { Journal } from '../../src/audit/journal/journal.ts';
import type { AuditRecord } from '../../src/audit/record/record.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: journal-writer.ts <dir>');

function record(n: number): AuditRecord {
  const startedAt = new Date();
  return {
    _id: `crash-${n}`,
    schema: 1,
    startedAt,
    endedAt: startedAt,
    durationMs: 0,
    upstreamTtfbMs: null,
    institution: null,
    client: { address: null, userAgent: null },
    apiKey: null,
    upstream: 'https://api.openai.com',
    request: {
      method: 'POST', path: '/v1/chat/completions', query: null, headers: {}, contentType: 'application/json',
      bytes: 0, body: { n, padding: 'x'.repeat(700) }, bodyEncoding: 'json', truncated: false, sha256: '',
    },
    response: {
      status: 200, headers: {}, contentType: null, bytes: 0, body: null, bodyEncoding: 'omitted',
      truncated: false, sha256: '', streamed: false,
    },
    openai: null,
    outcome: 'ok',
    error: null,
    trace: null,
  };
}

const journal = await Journal.open({ dir, segmentBytes: 64 * 1024, fsync: 'always' });
journal.onCommit(() => process.stdout.write(`committed ${journal.stats.committed}\n`));
let next = 0;
const burst = (): void => {
  for (let i = 0; i < 20; i++) journal.append(record(next++));
  setImmediate(burst);
};
burst();
