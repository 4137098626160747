/**
 * Reading Prometheus in tests, one way everywhere: the text exposition a `/metrics` scrape returns
 * (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format), the metric and
 * label names a PromQL expression uses (as far as the dashboard's queries need), and the HTTP API
 * (https://prometheus.io/docs/prometheus/latest/querying/api/).
 * Not a fake: it reads what the proxy and a real Prometheus give.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { request } from 'undici';

// ---------------------------------------------------------------- the binaries

/** The path of an executable on PATH (`prometheus`, `promtool` of the Debian package), or null. */
export function findBinary(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

// ---------------------------------------------------------------- the exposition

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function unescape(value: string): string {
  return value.replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

/** Every sample line, in order. */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = SAMPLE.exec(line);
    if (m === null) continue;
    const labels = Object.fromEntries([...(m[2] ?? '').matchAll(LABEL)].map((l) => [l[1] as string, unescape(l[2] as string)]));
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return samples;
}

/** Family name (as in `# TYPE`) -> its type. */
export function metricTypes(text: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1] as string, m[2] as string);
  return types;
}

/** The family a sample name belongs to: itself, or a histogram's or summary's for _bucket/_sum/_count. */
export function familyOf(name: string, types: Map<string, string>): string | undefined {
  if (types.has(name)) return name;
  const base = /^(.*)_(?:bucket|sum|count)$/.exec(name)?.[1];
  const type = base === undefined ? undefined : types.get(base);
  return type === 'histogram' || type === 'summary' ? base : undefined;
}

/** The value of the first sample of that name carrying these labels (others may be there too), or undefined. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  return parseSamples(text).find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

/** Samples by metric family (a histogram's _bucket, _sum and _count samples are its family's). */
export function families(text: string): Map<string, Sample[]> {
  const types = metricTypes(text);
  const out = new Map<string, Sample[]>();
  for (const s of parseSamples(text)) {
    const family = familyOf(s.name, types) ?? s.name;
    const list = out.get(family) ?? [];
    list.push(s);
    out.set(family, list);
  }
  return out;
}

/** The sum of the samples of that name whose labels pass `where`. */
export function total(samples: Sample[] | undefined, name: string, where: (labels: Record<string, string>) => boolean = () => true): number {
  return (samples ?? []).filter((s) => s.name === name && where(s.labels)).reduce((sum, s) => sum + s.value, 0);
}

// ---------------------------------------------------------------- PromQL, as far as the dashboard needs it

const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/** Metric names in a PromQL expression: identifiers that are not functions, keywords, labels or strings. */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    const [, name, call] = m as unknown as [string, string, string | undefined];
    if (call === undefined && !PROMQL_WORDS.has(name.toLowerCase())) names.add(name);
  }
  return [...names];
}

/** Label names used in selectors ({label="..."}) per metric, and in grouping clauses. */
export function labelUses(expr: string): { selectors: Array<{ metric: string | null; labels: string[] }>; grouping: string[] } {
  const selectors = [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}/g)].map((m) => ({
    metric: m[1] ?? null,
    labels: [...(m[2] as string).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1] as string),
  }));
  const grouping = [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) =>
    (m[1] as string)
      .split(',')
      .map((l) => l.trim())
      .filter((l) => l !== ''),
  );
  return { selectors, grouping };
}

// ---------------------------------------------------------------- the HTTP API

/** One series of an instant vector. */
export interface VectorSample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface ApiResponse<T> {
  status: 'success' | 'error';
  data: T;
  errorType?: string;
  error?: string;
}

/** A GET of the Prometheus HTTP API at `baseUrl` (`/api/v1/...`); a list value repeats its parameter. */
export async function prometheusApi<T>(baseUrl: string, path: string, params: Record<string, string | string[]> = {}): Promise<ApiResponse<T>> {
  const url = new URL(`${baseUrl}${path}`);
  for (const [key, value] of Object.entries(params)) for (const v of [value].flat()) url.searchParams.append(key, v);
  const res = await request(url, { headersTimeout: 10_000, bodyTimeout: 10_000 });
  return (await res.body.json()) as ApiResponse<T>;
}

/** An instant query (`/api/v1/query`). */
export function instantQuery(baseUrl: string, promql: string): Promise<ApiResponse<{ resultType: string; result: VectorSample[] }>> {
  return prometheusApi(baseUrl, '/api/v1/query', { query: promql });
}
