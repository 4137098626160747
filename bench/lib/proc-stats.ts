// A process seen from outside through /proc: open file descriptors, and the peak resident set
// over a window (sampled every 20 ms, as rss.ts does for its rise).
import { readdirSync } from 'node:fs';
import { rssBytes } from './rss.ts';

export const MiB = 1024 * 1024;

export function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

export function rssMiB(pid: number): number {
  return rssBytes(pid) / MiB;
}

export interface PeakWatch {
  /** The highest RSS seen so far, in MiB. */
  peak(): number;
  /** Stops sampling; returns the peak and the value when sampling began, in MiB. */
  stop(): { startMiB: number; peakMiB: number };
}

export function watchPeakRss(pid: number, everyMs = 20): PeakWatch {
  const start = rssBytes(pid);
  let max = start;
  const sample = (): void => {
    try {
      max = Math.max(max, rssBytes(pid));
    } catch {
      // the process died; the caller finds out from its exit
    }
  };
  const timer = setInterval(sample, everyMs);
  return {
    peak: () => max / MiB,
    stop() {
      clearInterval(timer);
      sample();
      return { startMiB: start / MiB, peakMiB: max / MiB };
    },
  };
}
