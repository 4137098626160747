/**
 * The proxy's version, read from package.json so there is one place to bump it. The file sits one
 * level above this module both in src/ (tsx) and in dist/ (the compiled build).
 */
import { readFileSync } from 'node:fs';

function readVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  if (typeof pkg.version !== 'string') throw new Error('package.json has no version');
  return pkg.version;
}

export const VERSION = readVersion();
