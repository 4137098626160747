// What every probe gets: a fresh proxy started as `npm start` runs it (audit on) against a fresh
// upstream emulator, the client limits it is given, and a way to report its figures.
import type { Upstream } from '../../test/support/upstream.ts';
import type { ProxyChild } from '../lib/proxy-child.ts';

export interface ProbeResult {
  pass: boolean;
  /** The one-line figure for the table. */
  figure: string;
  /** More lines for the details section. */
  details?: string[];
}

export interface Limits {
  headersMs: number;
  idleMs: number;
  bodyMs: number;
  /** Added to every timeout before a connection still open counts as not timed out. */
  slackMs: number;
}

export interface ProbeContext {
  limits: Limits;
  /** Starts the probe's proxy: the run's env, then the probe's `env`, then the command line's edits. */
  startProxy(options?: { env?: Record<string, string | undefined>; fdLimit?: number; upstreamUrl?: string; name?: string }): Promise<ProxyChild>;
  /** A fresh test upstream emulator (test/support/upstream.ts), closed after the probe. */
  startUpstream(): Promise<Upstream>;
  /** Progress on stderr. */
  note(message: string): void;
}

export interface Probe {
  name: string;
  /** The finding of issue 13 it reproduces. */
  finding: string;
  /** What must hold for it to pass. */
  goal: string;
  run(ctx: ProbeContext): Promise<ProbeResult>;
}

export const AUTH = 'Bearer sk-probe-000000000000000000000000000000000001';

export const MiB = 1024 * 1024;

/** Waits until `check` holds or `ms` pass (polling every 100 ms); true when it held. */
export async function within(ms: number, check: () => boolean | Promise<boolean>): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (performance.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
