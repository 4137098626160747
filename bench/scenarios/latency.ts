// Scenario 1: latency at concurrency 1 (wrk -t1 -c1 --latency); added latency is measured against
// the upstream reached directly in the same round.
import type { EndpointName } from '../lib/endpoints.ts';
import { runWrk, type WrkRun } from '../lib/wrk.ts';
import { noteSocketErrors, pause, type RoundContext } from './context.ts';

export function latencyRun(durationS: number): WrkRun {
  return { threads: 1, connections: 1, durationS, latency: true };
}

export async function latency(ctx: RoundContext): Promise<void> {
  const p50 = new Map<EndpointName, number>();
  const p99 = new Map<EndpointName, number>();
  for (const endpoint of ctx.order) {
    const result = await runWrk(latencyRun(ctx.settings.latencyS), `${endpoint.baseUrl}/v1/chat/completions`, endpoint.apiKey);
    noteSocketErrors(ctx, endpoint, 'latency', result);
    if (result.p50Ms === null || result.p99Ms === null) throw new Error(`wrk printed no latency distribution for ${endpoint.name}`);
    p50.set(endpoint.name, result.p50Ms);
    p99.set(endpoint.name, result.p99Ms);
    ctx.samples.add('p50', endpoint.name, result.p50Ms);
    ctx.samples.add('p99', endpoint.name, result.p99Ms);
    await pause(endpoint);
  }
  ctx.samples.addRelative('addedP50', p50, 'direct', 'diff');
  ctx.samples.addRelative('addedP99', p99, 'direct', 'diff');
  ctx.samples.addRelative('p50VsUndici', p50, 'pipe-undici', 'diff');
}
