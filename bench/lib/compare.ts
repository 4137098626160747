// The `--before` section of the report: each proxy variant of the other tree against the same
// variant of this one, measured in the same rounds, and whether this tree's costs more CPU per
// request than the run's own noise allows.
import type { BeforeTree } from './before-tree.ts';
import { BEFORE_VARIANTS, beforeName, type Variant } from './endpoints.ts';
import type { MetricKey, Samples } from './stats.ts';

type Format = (value: number) => string;

const COLUMNS: [MetricKey, string, Format][] = [
  ['cpuUs', 'CPU per request, c=64 (µs)', (v) => Math.round(v).toString()],
  ['xUndici', 'throughput ÷ pipe-undici', (v) => `${v.toFixed(2)}×`],
  ['rssReady', 'RSS at ready (MiB)', (v) => v.toFixed(0)],
  ['rssPeak', 'peak RSS under load (MiB)', (v) => v.toFixed(0)],
  ['p50', 'p50, c=1 (ms)', (v) => v.toFixed(3)],
  ['p99', 'p99, c=1 (ms)', (v) => v.toFixed(3)],
];

function spread(values: readonly number[]): number {
  return values.length === 0 ? 0 : Math.max(...values) - Math.min(...values);
}

function change(before: number, after: number): string {
  const percent = ((after - before) / before) * 100;
  return `${percent >= 0 ? '+' : ''}${percent.toFixed(1)}%`;
}

/**
 * Noise is the larger spread (max − min) of the two columns' per-round CPU per request: a rise of
 * the medians within what one column moved between rounds of this run is not called slower.
 */
export function cpuVerdict(samples: Samples, variant: Variant): string {
  const before = samples.median('cpuUs', beforeName(variant));
  const after = samples.median('cpuUs', variant);
  if (before === null || after === null) return 'not measured';
  const noise = Math.max(spread(samples.values('cpuUs', beforeName(variant))), spread(samples.values('cpuUs', variant)));
  const delta = after - before;
  const word = delta > noise ? '**slower**' : delta < -noise ? 'faster' : 'same within noise';
  return `${word} (${delta >= 0 ? '+' : ''}${Math.round(delta)} µs, noise ±${Math.round(noise)} µs)`;
}

function cell(samples: Samples, variant: Variant, metric: MetricKey, format: Format): string {
  const before = samples.median(metric, beforeName(variant));
  const after = samples.median(metric, variant);
  if (before === null || after === null || Number.isNaN(before) || Number.isNaN(after)) return '—';
  return `${format(before)} → ${format(after)} (${change(before, after)})`;
}

export function renderComparison(samples: Samples, variants: readonly Variant[], tree: BeforeTree, rounds: number): string {
  const measured = variants.filter((variant) => BEFORE_VARIANTS.includes(variant));
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  const header = ['variant', ...COLUMNS.map(([, label]) => label), 'verdict (CPU per request)'];
  const body = measured.map((variant) => line([
    variant,
    ...COLUMNS.map(([metric, , format]) => cell(samples, variant, metric, format)),
    cpuVerdict(samples, variant),
  ]));
  return `
## Before → after

\`${tree.ref}\` (${tree.commit.slice(0, 7)}, started as its package.json says: \`node ${tree.nodeArgs.join(' ')}\`) → this tree
(\`npm start\`'s build). Each cell is before → after, medians over ${rounds} rounds; both columns of a
variant were measured in the same rounds. RSS at ready is VmRSS once \`/readyz\` answered; peak RSS is
the highest VmRSS sampled every 20 ms during the throughput window. A variant is **slower** when its
median CPU per request rose by more than the run's noise: the larger spread (max − min) of the two
columns' per-round values; with fewer rounds that spread, and the verdict, mean less.

${[line(header), line(header.map(() => '---')), ...body].join('\n')}
`;
}
