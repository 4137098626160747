// Parses wrk 4 text output: latency percentiles (us/ms/s/m/h), Requests/sec, totals and errors.

export interface WrkResult {
  rps: number;
  requests: number;
  seconds: number;
  p50Ms: number | null;
  p99Ms: number | null;
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function toMs(value: string, unit: string): number {
  const scale = UNIT_MS[unit];
  if (scale === undefined) throw new Error(`unknown wrk time unit ${unit}`);
  return Number(value) * scale;
}

function percentile(text: string, pct: number): number | null {
  const match = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(text);
  return match?.[1] !== undefined && match[2] !== undefined ? toMs(match[1], match[2]) : null;
}

export function parseWrk(text: string): WrkResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(text)?.[1];
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m|h)/.exec(text);
  if (rps === undefined || total?.[1] === undefined || total[2] === undefined || total[3] === undefined) {
    throw new Error(`cannot parse wrk output:\n${text}`);
  }
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    rps: Number(rps),
    requests: Number(total[1]),
    seconds: toMs(total[2], total[3]) / 1000,
    p50Ms: percentile(text, 50),
    p99Ms: percentile(text, 99),
    non2xx: Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(text)?.[1] ?? 0),
    socketErrors: {
      connect: Number(errors?.[1] ?? 0),
      read: Number(errors?.[2] ?? 0),
      write: Number(errors?.[3] ?? 0),
      timeout: Number(errors?.[4] ?? 0),
    },
  };
}
