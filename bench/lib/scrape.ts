// Reads the proxy's admin endpoints: a value from the Prometheus exposition (/metrics) and /healthz.

export async function scrapeMetrics(adminUrl: string): Promise<string | null> {
  try {
    const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(5000) });
    return res.ok ? await res.text() : null;
  } catch {
    return null;
  }
}

/** Sum of the samples of `name` whose labels include every `labels` pair (null when there is none). */
export function metricValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | null {
  let total: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    const labelText = line[name.length] === '{' ? line.slice(name.length + 1, line.indexOf('}')) : '';
    if (!Object.entries(labels).every(([key, value]) => labelText.includes(`${key}="${value}"`))) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) total = (total ?? 0) + value;
  }
  return total;
}

export async function healthz(adminUrl: string): Promise<Record<string, unknown> | null> {
  try {
    const res = await fetch(`${adminUrl}/healthz`, { signal: AbortSignal.timeout(5000) });
    const body: unknown = await res.json();
    return typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
