/**
 * Calendar windows in UTC (shared/design/policy-file.md, "Limits"): a minute, hour, day or month
 * starts on its boundary, whatever the time the first request came.
 */
import type { Window } from './types.ts';

/** Start and end (exclusive), in ms since the epoch, of the window holding `now`. */
export function windowBounds(window: Window, now: number): { start: number; end: number } {
  const d = new Date(now);
  const y = d.getUTCFullYear();
  const mo = d.getUTCMonth();
  switch (window) {
    case 'minute': {
      const start = now - (((now % 60_000) + 60_000) % 60_000);
      return { start, end: start + 60_000 };
    }
    case 'hour': {
      const start = now - (((now % 3_600_000) + 3_600_000) % 3_600_000);
      return { start, end: start + 3_600_000 };
    }
    case 'day': {
      const start = Date.UTC(y, mo, d.getUTCDate());
      return { start, end: Date.UTC(y, mo, d.getUTCDate() + 1) };
    }
    case 'month':
      return { start: Date.UTC(y, mo, 1), end: Date.UTC(y, mo + 1, 1) };
  }
}
