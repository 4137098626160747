// One round: every scenario in turn, each measuring all endpoints back to back (A B C …), so that
// the figures compared with each other were taken seconds apart, under the same machine noise.
import { log } from '../lib/log.ts';
import type { RoundContext } from './context.ts';
import { latency } from './latency.ts';
import { streaming } from './streaming.ts';
import { throughput } from './throughput.ts';
import { transfers } from './transfers.ts';

const SCENARIOS = [
  ['latency c=1', latency],
  ['throughput c=64', throughput],
  ['streaming', streaming],
  ['large transfers', transfers],
] as const;

export async function runRound(ctx: RoundContext): Promise<void> {
  for (const [name, scenario] of SCENARIOS) {
    log(`round ${ctx.round}/${ctx.settings.rounds}: ${name} (${ctx.order.map((endpoint) => endpoint.name).join(' → ')})`);
    await scenario(ctx);
  }
}
