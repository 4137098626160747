/**
 * Counts survive a restart (SIGKILL included) without a database: the audit journal already holds
 * every exchange's record with its institution, virtual key fingerprint, start time, whether it
 * went upstream, usage and cost. At start, the segments written since the longest window the
 * policy limits began (at most the UTC month) are read once and each record is added to the windows still holding its
 * start time; what is lost is what the journal lost (its fsync interval). It counts as the live
 * limiter does (limits.ts): a request when it was forwarded upstream, tokens and cost always.
 */
import { open, stat } from 'node:fs/promises';
import type { LimitCounters, Subject } from './limits-counters.ts';
import { windowBounds } from './limits-windows.ts';
import { WINDOWS, type Policy, type Window } from './types.ts';

export interface RebuildStats {
  segments: number;
  lines: number;
  bytes: number;
  ms: number;
}

/** The longest window any limit of `policy` counts in; null when it sets no limit (nothing to read). */
export function longestWindow(policy: Policy): Window | null {
  const all = [...policy.defaults.limits, ...[...policy.institutions.values()].flatMap((i) => i.limits ?? []), ...[...policy.virtualKeys.values()].flatMap((k) => k.limits)];
  let longest = -1;
  for (const limit of all) longest = Math.max(longest, WINDOWS.indexOf(limit.window));
  return longest < 0 ? null : (WINDOWS[longest] ?? null);
}

/** Adds the records of `segments` (oldest first) started in the current `window` to `counters`. */
export async function rebuildCounts(counters: LimitCounters, segments: readonly string[], now: number, window: Window = 'month'): Promise<RebuildStats> {
  const began = performance.now();
  const since = windowBounds(window, now).start;
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
    stats.lines += await eachLine(path, (line) => countLine(counters, line, since, now));
  }
  stats.ms = performance.now() - began;
  return stats;
}

const CHUNK = 1024 * 1024;
const NEWLINE = 0x0a;

/**
 * Calls `onLine` with each whole line of the file as bytes (a last line without its newline is
 * being written, or torn: left out). Lines stay bytes: only the slices counted are decoded.
 */
async function eachLine(path: string, onLine: (line: Buffer) => void): Promise<number> {
  const fh = await open(path, 'r');
  let lines = 0;
  try {
    let carry: Buffer = Buffer.alloc(0);
    for (;;) {
      const chunk = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await fh.read(chunk, 0, CHUNK, null);
      if (bytesRead === 0) break;
      const data = carry.length === 0 ? chunk.subarray(0, bytesRead) : Buffer.concat([carry, chunk.subarray(0, bytesRead)]);
      let from = 0;
      for (let nl = data.indexOf(NEWLINE, from); nl !== -1; nl = data.indexOf(NEWLINE, from)) {
        if (nl > from) {
          lines++;
          onLine(data.subarray(from, nl));
        }
        from = nl + 1;
      }
      carry = Buffer.from(data.subarray(from));
    }
  } finally {
    await fh.close();
  }
  return lines;
}

interface RecordFields {
  startedAt?: { $date?: unknown };
  institution?: unknown;
  institutionSource?: unknown;
  apiKey?: { fingerprint?: unknown } | null;
  upstream?: unknown;
  openai?: { usage?: { inputTokens?: unknown; outputTokens?: unknown } | null; costUsd?: unknown } | null;
}

/**
 * The fields counted are the record's head (up to `request`) and its `openai` section (after the
 * bodies): only those two slices are parsed, not the bodies between them, most of a line. A JSON
 * body cannot hold a raw `,"request":` before the top-level one (nothing ahead of it is an object
 * with such a key), nor a raw `"openai":` after the top-level one (nothing after it has that key);
 * a line whose slices do not parse is parsed whole.
 */
const REQUEST_KEY = Buffer.from(',"request":');
const OPENAI_KEY = Buffer.from(',"openai":');
const OUTCOME_KEY = Buffer.from(',"outcome":');

function readFields(line: Buffer): RecordFields | null {
  const head = line.indexOf(REQUEST_KEY);
  const openai = line.lastIndexOf(OPENAI_KEY);
  const outcome = openai < 0 ? -1 : line.indexOf(OUTCOME_KEY, openai);
  if (head > 0 && openai > head && outcome > openai) {
    try {
      const fields = JSON.parse(`${line.toString('utf8', 0, head)}}`) as RecordFields;
      fields.openai = (JSON.parse(`{${line.toString('utf8', openai + 1, outcome)}}`) as Pick<RecordFields, 'openai'>).openai;
      return fields;
    } catch {
      // parsed whole below
    }
  }
  try {
    return JSON.parse(line.toString('utf8')) as RecordFields;
  } catch {
    return null; // a torn tail is cut by the journal at open; anything else unreadable counts nothing
  }
}

function countLine(counters: LimitCounters, line: Buffer, since: number, now: number): void {
  const record = readFields(line);
  if (record === null) return;
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
