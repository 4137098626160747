/** Policy files written to a temporary directory for the policy tests (real files, removed after). */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PolicyDir {
  dir: string;
  /** Writes `name` in the directory and returns its path. */
  write(name: string, content: string): string;
  remove(): void;
}

export function policyDir(): PolicyDir {
  const dir = mkdtempSync(join(tmpdir(), 'policy-'));
  return {
    dir,
    write(name, content) {
      const path = join(dir, name);
      writeFileSync(path, content);
      return path;
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
