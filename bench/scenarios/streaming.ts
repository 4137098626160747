// Scenario 3: streamed chat completions on a warm keep-alive connection: added time to first byte,
// and the worst per-chunk gap increase (a held-back chunk shows up as one long gap).
import http from 'node:http';
import type { EndpointName } from '../lib/endpoints.ts';
import { streamProblem, timedStream, type StreamTiming } from '../lib/sse-client.ts';
import { median } from '../lib/stats.ts';
import { pause, type RoundContext } from './context.ts';

/** Median over requests of each inter-event gap (event i − event i−1). */
function medianGaps(runs: StreamTiming[]): number[] {
  const count = runs[0]?.eventMs.length ?? 0;
  return Array.from({ length: Math.max(0, count - 1) }, (_, i) =>
    median(runs.map((run) => (run.eventMs[i + 1] ?? Number.NaN) - (run.eventMs[i] ?? Number.NaN))));
}

export async function streaming(ctx: RoundContext): Promise<void> {
  const ttfb = new Map<EndpointName, number>();
  const gaps = new Map<EndpointName, number[]>();
  for (const endpoint of ctx.order) {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const runs: StreamTiming[] = [];
    try {
      await timedStream(endpoint.baseUrl, agent, endpoint.apiKey); // opens the connection, not timed
      for (let i = 0; i < ctx.settings.streamRequests; i++) {
        const run = await timedStream(endpoint.baseUrl, agent, endpoint.apiKey);
        const problem = streamProblem(run);
        if (problem !== null) throw new Error(`streaming through ${endpoint.name}: ${problem}`);
        runs.push(run);
      }
    } finally {
      agent.destroy();
    }
    const firstByte = median(runs.map((run) => run.ttfbMs));
    ttfb.set(endpoint.name, firstByte);
    gaps.set(endpoint.name, medianGaps(runs));
    ctx.samples.add('ttfb', endpoint.name, firstByte);
    await pause(endpoint);
  }
  ctx.samples.addRelative('addedTtfb', ttfb, 'direct', 'diff');
  const direct = gaps.get('direct') ?? [];
  for (const [name, through] of gaps) {
    if (name === 'direct') continue;
    ctx.samples.add('worstGap', name, Math.max(...through.map((gap, i) => gap - (direct[i] ?? Number.NaN))));
  }
}
