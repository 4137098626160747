// The performance targets and their verdicts, judged on medians of per-round differences/ratios.
// Targets the brief states for "proxy" only are applied to the heavier variants too, marked assumed.
import type { Variant } from './endpoints.ts';
import type { MetricKey, Samples } from './stats.ts';

export interface Goal {
  variant: Variant;
  metric: MetricKey;
  op: '>=' | '<=' | '<';
  limit: number;
  text: string;
  assumed: boolean;
}

function goal(variant: Variant, metric: MetricKey, op: Goal['op'], limit: number, text: string, assumed = false): Goal {
  return { variant, metric, op, limit, text, assumed };
}

function streamingGoals(variant: Variant, assumed: boolean): Goal[] {
  return [
    goal(variant, 'addedTtfb', '<', 0.2, 'added TTFB < 0.2 ms', assumed),
    goal(variant, 'worstGap', '<', 1, 'worst added SSE gap < 1 ms', assumed),
  ];
}

function rssGoals(variant: Variant, limit: number, assumed: boolean): Goal[] {
  return [
    goal(variant, 'dlRss', '<', limit, `download RSS rise < ${limit} MiB`, assumed),
    goal(variant, 'ulRss', '<', limit, `upload RSS rise < ${limit} MiB`, assumed),
  ];
}

export const GOALS: readonly Goal[] = [
  goal('proxy', 'xUndici', '>=', 0.9, 'throughput ≥ 0.90× pipe-undici'),
  goal('proxy', 'p50VsUndici', '<=', 0.05, 'p50 ≤ pipe-undici p50 + 0.05 ms'),
  ...streamingGoals('proxy', false),
  ...rssGoals('proxy', 30, false),
  goal('proxy+audit', 'xUndici', '>=', 0.75, 'throughput ≥ 0.75× pipe-undici'),
  goal('proxy+audit', 'p50VsUndici', '<=', 0.15, 'p50 ≤ pipe-undici p50 + 0.15 ms'),
  ...streamingGoals('proxy+audit', true),
  ...rssGoals('proxy+audit', 40, false),
  goal('proxy+full', 'xUndici', '>=', 0.65, 'throughput ≥ 0.65× pipe-undici'),
  goal('proxy+full', 'p50VsUndici', '<=', 0.2, 'p50 ≤ pipe-undici p50 + 0.2 ms'),
  ...streamingGoals('proxy+full', true),
  ...rssGoals('proxy+full', 40, true),
  // Issue 14: a policy file costs at most 5 % of the same proxy's throughput, a local limit 10 %.
  goal('proxy+policy', 'xDefault', '>=', 0.95, 'throughput ≥ 0.95× proxy+default'),
  goal('proxy+limit', 'xDefault', '>=', 0.9, 'throughput ≥ 0.90× proxy+default'),
];

export interface Verdict {
  goal: Goal;
  value: number | null;
  /** null when the metric could not be measured (variant or its reference not selected). */
  met: boolean | null;
}

export function judge(samples: Samples, variants: readonly Variant[]): Verdict[] {
  return GOALS.filter((g) => variants.includes(g.variant)).map((g) => {
    const value = samples.median(g.metric, g.variant);
    if (value === null || Number.isNaN(value)) return { goal: g, value: null, met: null };
    const met = g.op === '>=' ? value >= g.limit : g.op === '<=' ? value <= g.limit : value < g.limit;
    return { goal: g, value, met };
  });
}
