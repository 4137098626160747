// Per-round samples of every metric for every endpoint, and their medians.
import type { EndpointName } from './endpoints.ts';

export type MetricKey =
  | 'p50' | 'p99' | 'addedP50' | 'addedP99' | 'p50VsUndici'
  | 'rps' | 'xUndici' | 'xHttp' | 'xDefault' | 'cpuUs' | 'cpuVsUndici' | 'cpuVsDefault'
  | 'ttfb' | 'addedTtfb' | 'worstGap'
  | 'dlSeconds' | 'dlRss' | 'ulSeconds' | 'ulRss'
  | 'auditRecordsPerS' | 'auditMBPerS' | 'auditRecordsPerRequest'
  | 'rssReady' | 'rssPeak';

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const hi = sorted[mid] ?? Number.NaN;
  return sorted.length % 2 === 1 ? hi : ((sorted[mid - 1] ?? Number.NaN) + hi) / 2;
}

export class Samples {
  private readonly byMetric = new Map<MetricKey, Map<EndpointName, number[]>>();

  add(metric: MetricKey, endpoint: EndpointName, value: number): void {
    let byEndpoint = this.byMetric.get(metric);
    if (byEndpoint === undefined) this.byMetric.set(metric, (byEndpoint = new Map<EndpointName, number[]>()));
    const values = byEndpoint.get(endpoint);
    if (values === undefined) byEndpoint.set(endpoint, [value]);
    else values.push(value);
  }

  values(metric: MetricKey, endpoint: EndpointName): number[] {
    return this.byMetric.get(metric)?.get(endpoint) ?? [];
  }

  median(metric: MetricKey, endpoint: EndpointName): number | null {
    const values = this.values(metric, endpoint);
    return values.length === 0 ? null : median(values);
  }

  /** Records `value(x) − value(ref)` (or the ratio) for every endpoint but `ref`, within one round. */
  addRelative(metric: MetricKey, round: Map<EndpointName, number>, ref: EndpointName, kind: 'diff' | 'ratio'): void {
    const base = round.get(ref);
    if (base === undefined) return;
    for (const [name, value] of round) {
      if (name === ref || name === 'direct') continue;
      this.add(metric, name, kind === 'diff' ? value - base : value / base);
    }
  }
}
