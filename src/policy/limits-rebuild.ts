/**
 * Counts survive a restart (SIGKILL included) without a database: the audit journal already holds
 * every exchange's record with its institution, virtual key fingerprint, start time, whether it
 * went upstream, usage and cost. At start, the segments written since the longest open window
 * began (the UTC month) are read once and each record is added to the windows still holding its
 * start time; what is lost is what the journal lost (its fsync interval). It counts as the live
 * limiter does (limits.ts): a request when it was forwarded upstream, tokens and cost always.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { LimitCounters, Subject } from './limits-counters.ts';
import { windowBounds } from './limits-windows.ts';

export interface RebuildStats {
  segments: number;
  lines: number;
  bytes: number;
  ms: number;
}

/** Adds the records of `segments` (oldest first) started in this month's window to `counters`. */
export async function rebuildCounts(counters: LimitCounters, segments: readonly string[], now: number): Promise<RebuildStats> {
  const began = performance.now();
  const since = windowBounds('month', now).start;
  const stats: RebuildStats = { segments: 0, lines: 0, bytes: 0, ms: 0 };
  for (const path of segments) {
    let info;
    try {
      info = await stat(path);
    } catch {
      continue; // retention removed it meanwhile
    }
    // Last written before the month began: none of its records can count.
    if (info.mtimeMs < since) continue;
    stats.segments++;
    stats.bytes += info.size;
    const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity });
    for await (const line of lines) {
      stats.lines++;
      countLine(counters, line, since, now);
    }
  }
  stats.ms = performance.now() - began;
  return stats;
}

interface RecordFields {
  startedAt?: { $date?: unknown };
  institution?: unknown;
  institutionSource?: unknown;
  apiKey?: { fingerprint?: unknown } | null;
  upstream?: unknown;
  openai?: { usage?: { inputTokens?: unknown; outputTokens?: unknown } | null; costUsd?: unknown } | null;
}

function countLine(counters: LimitCounters, line: string, since: number, now: number): void {
  let record: RecordFields;
  try {
    record = JSON.parse(line) as RecordFields;
  } catch {
    return; // a torn tail is cut by the journal at open; anything else unreadable counts nothing
  }
  const date = record.startedAt?.$date;
  const at = typeof date === 'string' ? Date.parse(date) : NaN;
  if (!(at >= since) || at > now) return;
  const usage = {
    requests: typeof record.upstream === 'string' && record.upstream !== '' ? 1 : 0,
    tokens: num(record.openai?.usage?.inputTokens) + num(record.openai?.usage?.outputTokens),
    costUsd: num(record.openai?.costUsd),
  };
  if (usage.requests === 0 && usage.tokens === 0 && usage.costUsd === 0) return;
  if (typeof record.institution === 'string') counters.add(`institution:${record.institution}` satisfies Subject, at, usage, now);
  const print = record.apiKey?.fingerprint;
  if (record.institutionSource === 'virtual_key' && typeof print === 'string') counters.add(`virtualKey:${print}` satisfies Subject, at, usage, now);
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}
