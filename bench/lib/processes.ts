// Registry of every child the harness starts (servers and wrk), so that a normal end, an error
// or Ctrl-C all leave nothing running.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync } from 'node:fs';
import { ROOT } from './paths.ts';

const live = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * `node <nodeFlags> <file>` (with `--import tsx` for a TypeScript file: the bench's own servers;
 * the proxy runs compiled, as `npm start` runs it), stdout discarded and stderr appended to `logPath`.
 */
export function spawnNode(file: string, env: NodeJS.ProcessEnv, logPath: string, nodeFlags: readonly string[] = []): ChildProcess {
  return spawnNodeArgs([...nodeFlags, ...(file.endsWith('.ts') ? ['--import', 'tsx'] : []), file], env, logPath, ROOT);
}

/** `node <args>` in `cwd` (another tree's proxy runs from its own checkout), output as spawnNode's. */
export function spawnNodeArgs(args: readonly string[], env: NodeJS.ProcessEnv, logPath: string, cwd: string): ChildProcess {
  const fd = openSync(logPath, 'a');
  try {
    // A file, not a pipe: a chatty child then costs the driver nothing and can never block on us.
    return track(spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'ignore', fd] }));
  } finally {
    closeSync(fd);
  }
}

/** SIGTERM, then SIGKILL if the child has not exited within `graceMs`. */
export async function stop(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (!isRunning(child)) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((child) => stop(child)));
}

/** Last resort from a synchronous 'exit' handler. */
export function killAllNow(): void {
  for (const child of live) child.kill('SIGKILL');
}
