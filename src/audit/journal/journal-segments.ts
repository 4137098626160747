/**
 * The journal's files: segment naming and listing (shared with the shipper), cutting a torn
 * tail after a crash, retention, and the probe that tells whether the directory takes writes.
 */
import { open, readdir, rm, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { AppError } from '../../errors.ts';

const SEGMENT_NAME = /^audit-(\d{16})\.ndjson$/;
const PROBE_NAME = '.audit-journal-probe';
const PROBE_BYTES = 4096;
const TAIL_CHUNK = 64 * 1024;
const NEWLINE = 0x0a;
const DAY_MS = 86_400_000;

export class JournalSegmentNameError extends AppError {
  readonly code = 'audit_journal_bad_segment_name';
  readonly status = 500;
  override readonly name = 'JournalSegmentNameError';
}

/** The file system took no bytes and reported no error: treat it as unwritable. */
export class JournalWriteError extends AppError {
  readonly code = 'audit_journal_unwritable';
  /** As AuditUnavailableError, what a request refused for it gets. */
  readonly status = 503;
  override readonly name = 'JournalWriteError';
}

export function segmentPath(dir: string, sequence: number): string {
  return join(dir, `audit-${String(sequence).padStart(16, '0')}.ndjson`);
}

/** The sequence number of a segment path, e.g. 42 for `…/audit-0000000000000042.ndjson`. */
export function segmentSequence(path: string): number {
  const match = SEGMENT_NAME.exec(basename(path));
  if (!match?.[1]) throw new JournalSegmentNameError(`not an audit journal segment: ${path}`);
  return Number(match[1]);
}

/** Full paths of the segments in `dir`, oldest first; none when `dir` does not exist. */
export async function listSegments(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  // Zero-padded sequences: name order is sequence order.
  return names.filter((name) => SEGMENT_NAME.test(name)).sort().map((name) => join(dir, name));
}

export async function writeAll(fh: FileHandle, data: Buffer): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const { bytesWritten } = await fh.write(data, offset, data.length - offset);
    if (bytesWritten === 0) throw new JournalWriteError('the file system accepted no bytes');
    offset += bytesWritten;
  }
}

/** Offset just past the last newline of the file's first `size` bytes (0 when none). */
async function endOfLastLine(fh: FileHandle, size: number): Promise<number> {
  const chunk = Buffer.alloc(Math.min(TAIL_CHUNK, size));
  for (let end = size; end > 0; ) {
    const start = Math.max(0, end - chunk.length);
    const { bytesRead } = await fh.read(chunk, 0, end - start, start);
    const newline = chunk.subarray(0, bytesRead).lastIndexOf(NEWLINE);
    if (newline !== -1) return start + newline + 1;
    end = start;
  }
  return 0;
}

/**
 * A crash mid-write leaves a partial last line: cut the file back to its last newline.
 * Returns how many bytes were cut.
 */
export async function cutTornTail(path: string): Promise<number> {
  const fh = await open(path, 'r+');
  try {
    const { size } = await fh.stat();
    const end = await endOfLastLine(fh, size);
    if (end === size) return 0;
    await fh.truncate(end);
    await fh.datasync();
    return size - end;
  } finally {
    await fh.close();
  }
}

/** Writes, syncs and removes a small file: proves the directory takes data again. */
export async function probeDirectory(dir: string): Promise<void> {
  const path = join(dir, PROBE_NAME);
  const fh = await open(path, 'w');
  try {
    await writeAll(fh, Buffer.alloc(PROBE_BYTES));
    await fh.datasync();
  } finally {
    await fh.close();
    await rm(path, { force: true });
  }
}

/** Best effort: makes a new segment's directory entry durable. Some file systems refuse it. */
export async function syncDirectory(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    await fh.sync().finally(() => fh.close());
  } catch {
    // A segment whose entry is not yet durable is still written and read correctly.
  }
}

export interface RetentionPolicy {
  retentionDays: number | null;
  retentionBytes: number | null;
  /** The shipper's say on whether a segment may go (it has been shipped). */
  canDelete: (segmentPath: string) => boolean;
}

interface SegmentFile {
  path: string;
  size: number;
  mtimeMs: number;
}

async function statSegments(dir: string): Promise<SegmentFile[]> {
  const files = await Promise.all(
    (await listSegments(dir)).map(async (path) => {
      const info = await stat(path).catch(() => null); // gone meanwhile
      return info && { path, size: info.size, mtimeMs: info.mtimeMs };
    }),
  );
  return files.filter((file) => file !== null);
}

function allowed(policy: RetentionPolicy, path: string): boolean {
  try {
    return policy.canDelete(path);
  } catch {
    return false;
  }
}

/**
 * Deletes, oldest first, segments older than `retentionDays` (by mtime: the time of their newest
 * record) and segments beyond `retentionBytes` in total, never `active` and only those
 * `canDelete` lets go. Returns the deleted paths.
 */
export async function enforceRetention(
  dir: string,
  policy: RetentionPolicy,
  active: string | null,
  now = Date.now(),
): Promise<string[]> {
  const files = await statSegments(dir);
  let total = files.reduce((sum, file) => sum + file.size, 0);
  const deleted: string[] = [];
  for (const file of files) {
    const tooOld = policy.retentionDays !== null && file.mtimeMs < now - policy.retentionDays * DAY_MS;
    const overBudget = policy.retentionBytes !== null && total > policy.retentionBytes;
    if (file.path === active || !(tooOld || overBudget) || !allowed(policy, file.path)) continue;
    await unlink(file.path);
    total -= file.size;
    deleted.push(file.path);
  }
  return deleted;
}
