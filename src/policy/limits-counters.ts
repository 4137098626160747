/**
 * What each institution and virtual key has used in its current windows, in this process.
 * A subject is `institution:<name>` or `virtualKey:<fingerprint>`; each holds one slot per
 * window kind, reset when the clock passes the slot's end (calendar windows, limits-windows.ts).
 */
import { windowBounds } from './limits-windows.ts';
import { WINDOWS, type LimitKind, type Window } from './types.ts';

export interface WindowCount {
  start: number;
  end: number;
  requests: number;
  tokens: number;
  costUsd: number;
}

export type Subject = `institution:${string}` | `virtualKey:${string}`;

export interface Usage {
  requests: number;
  tokens: number;
  costUsd: number;
}

export class LimitCounters {
  readonly #subjects = new Map<Subject, Record<Window, WindowCount>>();

  /** The slot of `window` holding `now` (a fresh one once the old window has ended). */
  slot(subject: Subject, window: Window, now: number): WindowCount {
    let slots = this.#subjects.get(subject);
    if (slots === undefined) {
      slots = {} as Record<Window, WindowCount>;
      for (const w of WINDOWS) slots[w] = fresh(w, now);
      this.#subjects.set(subject, slots);
    }
    let slot = slots[window];
    if (now >= slot.end || now < slot.start) slot = slots[window] = fresh(window, now);
    return slot;
  }

  used(subject: Subject, window: Window, kind: LimitKind, now: number): number {
    return this.slot(subject, window, now)[kind];
  }

  /** Adds to every window of `subject` that holds `at` (a past time only counts in a window still open). */
  add(subject: Subject, at: number, usage: Usage, now: number = at): void {
    for (const w of WINDOWS) {
      const slot = this.slot(subject, w, now);
      if (at < slot.start || at >= slot.end) continue;
      slot.requests += usage.requests;
      slot.tokens += usage.tokens;
      slot.costUsd += usage.costUsd;
    }
  }

  subjects(): IterableIterator<Subject> {
    return this.#subjects.keys();
  }
}

function fresh(window: Window, now: number): WindowCount {
  const { start, end } = windowBounds(window, now);
  return { start, end, requests: 0, tokens: 0, costUsd: 0 };
}
