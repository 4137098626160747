// Samples a process's resident set (VmRSS in /proc/<pid>/status) every 20 ms to find how much it
// grows while a transfer runs: rise = max seen − value just before.
import { readFileSync } from 'node:fs';

const MiB = 1024 * 1024;

export function rssBytes(pid: number): number {
  // Synchronous on purpose: a /proc read takes microseconds and keeps the sample instant exact.
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const kib = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kib) * 1024;
}

export interface RssWatch {
  /** Stops sampling and returns the rise in MiB. */
  stop(): number;
}

export function watchRss(pid: number, everyMs = 20): RssWatch {
  const before = rssBytes(pid);
  let max = before;
  const timer = setInterval(() => { max = Math.max(max, rssBytes(pid)); }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      max = Math.max(max, rssBytes(pid));
      return (max - before) / MiB;
    },
  };
}
