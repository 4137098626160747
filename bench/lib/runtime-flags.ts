// The Node flags `npm start` runs the compiled proxy with (package.json), read from there so the bench
// measures the proxy as it is started. The baselines get them too: every measured server runs
// on the same runtime settings, and only the code differs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROXY_ENTRY, ROOT } from './paths.ts';

function startFlags(): string[] {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts?: { start?: string } };
  const words = (pkg.scripts?.start ?? '').split(/\s+/);
  if (words[0] !== 'node' || words.at(-1) !== PROXY_ENTRY) throw new Error(`package.json start is not "node <flags> ${PROXY_ENTRY}": ${pkg.scripts?.start}`);
  return words.slice(1, -1);
}

export const RUNTIME_FLAGS: readonly string[] = startFlags();
