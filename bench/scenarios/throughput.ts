// Scenario 2: throughput at concurrency 64 (wrk -t2 -c64), as ratios to both baselines within the
// round, the server's CPU time per request and its peak RSS; for proxy+audit also the journal's
// sustained write rate (scenario 5).
import { cpuSeconds } from '../lib/cpu.ts';
import { watchPeakRss } from '../lib/proc-stats.ts';
import type { Endpoint, EndpointName } from '../lib/endpoints.ts';
import type { WrkResult } from '../lib/wrk-parse.ts';
import { runWrk, type WrkRun } from '../lib/wrk.ts';
import { noteSocketErrors, pause, type RoundContext } from './context.ts';

export function throughputRun(durationS: number): WrkRun {
  return { threads: 2, connections: 64, durationS, latency: false };
}

async function measure(ctx: RoundContext, endpoint: Endpoint): Promise<WrkResult> {
  const run = throughputRun(ctx.settings.throughputS);
  const url = `${endpoint.baseUrl}/v1/chat/completions`;
  const journal = endpoint.journal;
  if (journal === null) return runWrk(run, url, endpoint.apiKey);
  const before = await journal.size();
  const result = await runWrk(run, url, endpoint.apiKey);
  // Records still batched when wrk stops, and proxy+full's last span export (within 200 ms), are
  // part of the run: its CPU is read after the journal has been quiet for a second.
  await journal.settle(1000);
  if (endpoint.name !== 'proxy+audit') return result;
  const after = await journal.size();
  const records = after.records - before.records;
  ctx.samples.add('auditRecordsPerS', endpoint.name, records / result.seconds);
  ctx.samples.add('auditMBPerS', endpoint.name, (after.bytes - before.bytes) / 1e6 / result.seconds);
  ctx.samples.add('auditRecordsPerRequest', endpoint.name, records / result.requests);
  return result;
}

export async function throughput(ctx: RoundContext): Promise<void> {
  const rps = new Map<EndpointName, number>();
  const cpu = new Map<EndpointName, number>();
  for (const endpoint of ctx.order) {
    const cpuBefore = cpuSeconds(endpoint.pid);
    const rss = watchPeakRss(endpoint.pid);
    let result: WrkResult;
    try {
      result = await measure(ctx, endpoint);
    } finally {
      ctx.samples.add('rssPeak', endpoint.name, rss.stop().peakMiB);
    }
    // For proxy+audit and proxy+full, read once their journal has settled (see measure).
    const cpuUs = ((cpuSeconds(endpoint.pid) - cpuBefore) * 1e6) / Math.max(1, result.requests);
    noteSocketErrors(ctx, endpoint, 'throughput', result);
    rps.set(endpoint.name, result.rps);
    cpu.set(endpoint.name, cpuUs);
    ctx.samples.add('rps', endpoint.name, result.rps);
    ctx.samples.add('cpuUs', endpoint.name, cpuUs);
    await pause(endpoint);
  }
  ctx.samples.addRelative('xUndici', rps, 'pipe-undici', 'ratio');
  ctx.samples.addRelative('xHttp', rps, 'pipe-http', 'ratio');
  ctx.samples.addRelative('cpuVsUndici', cpu, 'pipe-undici', 'ratio');
  // The policy variants' targets: the same proxy without the policy file, in the same round.
  ctx.samples.addRelative('xDefault', rps, 'proxy+default', 'ratio');
  ctx.samples.addRelative('cpuVsDefault', cpu, 'proxy+default', 'ratio');
}
