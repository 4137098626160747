// Reads the proxy's audit journal from outside: records = lines in AUDIT_DIR/**/*.ndjson, counted
// incrementally (only bytes appended since the last look), and a wait until writing has gone quiet.
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from './log.ts';

export interface JournalSize {
  records: number;
  /** Apparent size of the *.ndjson files. */
  bytes: number;
  /** Allocated blocks of every file under the directory. */
  diskBytes: number;
}

async function countNewlines(path: string, start: number, end: number): Promise<number> {
  if (end <= start) return 0;
  let lines = 0;
  for await (const chunk of createReadStream(path, { start, end: end - 1 }) as AsyncIterable<Buffer>) {
    for (let at = chunk.indexOf(10); at !== -1; at = chunk.indexOf(10, at + 1)) lines++;
  }
  return lines;
}

export class Journal {
  private readonly seen = new Map<string, { offset: number; lines: number }>();

  constructor(readonly dir: string) {}

  private async files(): Promise<{ path: string; size: number; blocks: number }[]> {
    const names = await readdir(this.dir, { recursive: true });
    const files = await Promise.all(names.map(async (name) => {
      const path = join(this.dir, name);
      const info = await stat(path).catch(() => null); // rotated away between readdir and stat
      return info?.isFile() === true ? { path, size: info.size, blocks: info.blocks } : null;
    }));
    return files.filter((file) => file !== null);
  }

  async size(): Promise<JournalSize> {
    let records = 0;
    let bytes = 0;
    let diskBytes = 0;
    for (const file of await this.files()) {
      diskBytes += file.blocks * 512;
      if (!file.path.endsWith('.ndjson')) continue;
      let known = this.seen.get(file.path) ?? { offset: 0, lines: 0 };
      if (file.size < known.offset) known = { offset: 0, lines: 0 }; // truncated or replaced: recount
      known = { offset: file.size, lines: known.lines + await countNewlines(file.path, known.offset, file.size) };
      this.seen.set(file.path, known);
      records += known.lines;
      bytes += file.size;
    }
    return { records, bytes, diskBytes };
  }

  /** Waits until the journal's total size has not changed for `quietMs` (at most `maxMs`). */
  async settle(quietMs: number, maxMs = 10_000): Promise<void> {
    const start = performance.now();
    let last = -1;
    let since = start;
    while (performance.now() - start < maxMs) {
      const total = (await this.files()).reduce((sum, file) => sum + file.size, 0);
      const now = performance.now();
      if (total !== last) {
        last = total;
        since = now;
      } else if (now - since >= quietMs) {
        return;
      }
      await sleep(100);
    }
  }
}
