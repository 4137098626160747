// `--before <ref>`: another commit of this repository, checked out with `git worktree add --detach`
// into a temporary directory (never the main checkout), sharing this checkout's node_modules, and
// started exactly as ITS package.json `start` says (`--import tsx src/main.ts` in older trees,
// `dist/main.js` compiled from its own tsconfig.build.json in newer ones).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { log } from './log.ts';
import { ROOT } from './paths.ts';

export interface BeforeTree {
  /** The ref as given on the command line, and the commit it named. */
  ref: string;
  commit: string;
  dir: string;
  /** Everything after `node` in the tree's start script: its flags and its entry point. */
  nodeArgs: string[];
}

let checkedOut: string | null = null;

function git(args: string[], cwd = ROOT): string {
  return execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

function startArgs(dir: string): string[] {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { scripts?: { start?: string } };
  const start = pkg.scripts?.start ?? '';
  const words = start.split(/\s+/).filter((word) => word !== '');
  if (words[0] !== 'node' || words.length < 2) throw new Error(`--before: its package.json start is not "node <flags> <entry>": ${start}`);
  return words.slice(1);
}

/** Checks `ref` out, links node_modules, compiles it if its start runs dist/; removed by removeBeforeTree. */
export function checkoutBeforeTree(ref: string): BeforeTree {
  const commit = git(['rev-parse', '--verify', `${ref}^{commit}`]);
  const dir = mkdtempSync(join(os.tmpdir(), 'proxy-bench-before-'));
  checkedOut = dir;
  log(`checking out ${ref} (${commit.slice(0, 7)}) into ${dir}`);
  git(['worktree', 'add', '--detach', dir, commit]);
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(dir, 'node_modules'));
  const nodeArgs = startArgs(dir);
  const entry = nodeArgs.at(-1) ?? '';
  if (entry.startsWith('dist/')) {
    // Its own build configuration, this checkout's compiler (node_modules is shared).
    log(`compiling ${ref}'s src/ to its dist/ (tsc -p tsconfig.build.json)`);
    execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'inherit' });
  }
  if (!existsSync(join(dir, entry))) throw new Error(`--before: ${ref}'s start entry ${entry} does not exist`);
  return { ref, commit, dir, nodeArgs };
}

/** Synchronous, so the harness's 'exit' handler can call it too; a second call does nothing. */
export function removeBeforeTree(): void {
  const dir = checkedOut;
  if (dir === null) return;
  checkedOut = null;
  try {
    git(['worktree', 'remove', '--force', dir]);
  } catch {
    // A checkout that failed half-way: drop the directory and git's record of it.
    rmSync(dir, { recursive: true, force: true });
    git(['worktree', 'prune']);
  }
}
