// The measured servers of one round: started fresh every round (so one process's JIT/GC luck varies
// between rounds instead of biasing a column for the whole run), verified, warmed up, then stopped.
import type { Endpoint, EndpointName, StartContext } from './endpoints.ts';
import { startVariant } from './endpoints.ts';
import { log } from './log.ts';
import { stop } from './processes.ts';
import { verify } from './verify.ts';
import { runWrk } from './wrk.ts';
import { pause } from '../scenarios/context.ts';
import { throughputRun } from '../scenarios/throughput.ts';

export async function startFleet(names: readonly Exclude<EndpointName, 'direct'>[], ctx: StartContext): Promise<Endpoint[]> {
  const started = await Promise.allSettled(names.map((name) => startVariant(name, ctx)));
  const failed = started.find((result) => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason; // the others are stopped by the harness's cleanup
  return started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
}

/** Fails loudly unless every endpoint answers every scenario correctly, then warms each up with load. */
export async function prepare(endpoints: readonly Endpoint[], warmupS: number): Promise<void> {
  for (const endpoint of endpoints) await verify(endpoint);
  for (const endpoint of endpoints) {
    await runWrk(throughputRun(warmupS), `${endpoint.baseUrl}/v1/chat/completions`, endpoint.apiKey);
    await pause(endpoint);
  }
  log(`verified and warmed up ${endpoints.map((endpoint) => endpoint.name).join(', ')}`);
}

export async function stopFleet(endpoints: readonly Endpoint[]): Promise<void> {
  await Promise.all(endpoints.map((endpoint) => stop(endpoint.child)));
}
