// Runs wrk with the chat script against one URL and returns its parsed figures; non-2xx answers
// or refused connections fail the run, other socket errors are returned for the report's notes.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { ROOT, WRK_BIN, WRK_SCRIPT } from './paths.ts';
import { track } from './processes.ts';
import { parseWrk, type WrkResult } from './wrk-parse.ts';

export interface WrkRun {
  threads: number;
  connections: number;
  durationS: number;
  latency: boolean;
}

export function wrkFlags(run: WrkRun): string {
  return `-t${run.threads} -c${run.connections} -d${run.durationS}s${run.latency ? ' --latency' : ''}`;
}

/** `apiKey` is sent as the bearer token (bench/wrk/chat.lua reads it from BENCH_API_KEY). */
export async function runWrk(run: WrkRun, url: string, apiKey: string): Promise<WrkResult> {
  const args = [...wrkFlags(run).split(' '), '-s', WRK_SCRIPT, url];
  const child = track(spawn(WRK_BIN, args, { cwd: ROOT, env: { ...process.env, BENCH_API_KEY: apiKey }, stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => { out += text; });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => { out += text; });
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`wrk ${args.join(' ')} exited with ${String(code)}:\n${out}`);
  const result = parseWrk(out);
  if (result.non2xx > 0 || result.socketErrors.connect > 0) {
    throw new Error(`wrk against ${url}: ${result.non2xx} non-2xx answers, ${result.socketErrors.connect} connect errors:\n${out}`);
  }
  return result;
}
