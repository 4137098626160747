// The Node flags `npm start` runs the proxy with (package.json), read from there so the bench
// measures the proxy as it is started. The baselines get them too: every measured server runs
// on the same runtime settings, and only the code differs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './paths.ts';

function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts?: { start?: string } };
  const words = (pkg.scripts?.start ?? '').split(/\s+/);
  const end = words.indexOf('--import');
  if (words[0] !== 'node' || end === -1) throw new Error(`package.json start is not "node <flags> --import tsx src/main.ts": ${pkg.scripts?.start}`);
  return words.slice(1, end);
}

export const RUNTIME_FLAGS: readonly string[] = startFlags();
