// What every scenario gets for one round: the endpoints in this round's order, the settings,
// where samples and notes go, and the pause that separates two measurements.
import type { Endpoint } from '../lib/endpoints.ts';
import type { Settings } from '../lib/options.ts';
import type { Samples } from '../lib/stats.ts';
import type { WrkResult } from '../lib/wrk-parse.ts';
import { sleep } from '../lib/log.ts';
import { isRunning } from '../lib/processes.ts';
import { logTail } from '../lib/ready.ts';

export interface RoundContext {
  round: number;
  order: Endpoint[];
  settings: Settings;
  samples: Samples;
  notes: string[];
}

/** Lets the last endpoint's background work (journal flush, GC, span export) finish before the next one is timed. */
export async function pause(endpoint: Endpoint): Promise<void> {
  if (!isRunning(endpoint.child)) throw new Error(`${endpoint.name} died during the run; stderr:\n${logTail(endpoint.logPath)}`);
  if (endpoint.journal !== null) await endpoint.journal.settle(300, 5000);
  await sleep(200);
}

export function noteSocketErrors(ctx: RoundContext, endpoint: Endpoint, scenario: string, result: WrkResult): void {
  const { read, write, timeout } = result.socketErrors;
  if (read + write + timeout > 0) {
    ctx.notes.push(`round ${ctx.round}, ${scenario}, ${endpoint.name}: wrk socket errors read ${read}, write ${write}, timeout ${timeout}`);
  }
}
