/**
 * The shipper's place in the journal: `<dir>/shipper.checkpoint.json` names a segment and the byte
 * offset after the last line stored in MongoDB. Replaced atomically (temp file, fsync, rename).
 */
import { open, readFile, rename } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { segmentSequence } from '../journal/journal.ts';
import { AppError } from '../../errors.ts';

export const CHECKPOINT_FILE = 'shipper.checkpoint.json';

/** A byte position in the journal; `seq` is the segment's sequence, kept for ordering. */
export interface Position {
  segment: string;
  seq: number;
  offset: number;
}

export class ShipperCheckpointError extends AppError {
  readonly code = 'audit_shipper_bad_checkpoint';
  readonly status = 500;
  override readonly name = 'ShipperCheckpointError';
}

/** The start of the segment at `path` (a full path or a file name). */
export function startOf(path: string): Position {
  const segment = basename(path);
  return { segment, seq: segmentSequence(segment), offset: 0 };
}

export function comparePositions(a: Position, b: Position): number {
  return a.seq - b.seq || a.offset - b.offset;
}

function parseCheckpoint(text: string): Position {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ShipperCheckpointError(`${CHECKPOINT_FILE} is not JSON`, { cause: err });
  }
  const { segment, offset } = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  if (typeof segment !== 'string' || typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
    throw new ShipperCheckpointError(`${CHECKPOINT_FILE} does not hold {segment, offset}: ${text.slice(0, 200)}`);
  }
  try {
    return { ...startOf(segment), offset };
  } catch (err) {
    throw new ShipperCheckpointError(`${CHECKPOINT_FILE} names no journal segment: ${segment}`, { cause: err });
  }
}

/** The saved position; null when there is none yet. Throws ShipperCheckpointError for a damaged file. */
export async function readCheckpoint(dir: string): Promise<Position | null> {
  let text: string;
  try {
    text = await readFile(join(dir, CHECKPOINT_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  return parseCheckpoint(text);
}

/** Best effort: some file systems refuse to fsync a directory; the rename then lands when they say. */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    await fh.sync().finally(() => fh.close());
  } catch {
    // The checkpoint is still correct, only possibly older after a power cut: duplicates, not loss.
  }
}

export async function writeCheckpoint(dir: string, at: Position): Promise<void> {
  const path = join(dir, CHECKPOINT_FILE);
  const temp = `${path}.tmp`;
  const fh = await open(temp, 'w');
  try {
    await fh.writeFile(`${JSON.stringify({ segment: at.segment, offset: at.offset })}\n`);
    // Synced before the rename, so a crash can never leave the checkpoint empty or half written.
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await rename(temp, path);
  await syncDirectory(dir);
}
