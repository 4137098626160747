/**
 * Structured logs: one JSON line per event on stderr. `every` rate-limits a noisy event
 * (a journal that cannot write, a failing tap) to one line per interval, counting the rest.
 */
type Level = 'info' | 'warn' | 'error';

function write(level: Level, msg: string, fields?: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields })}\n`);
}

export const log = {
  info: (msg: string, fields?: Record<string, unknown>): void => write('info', msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>): void => write('warn', msg, fields),
  error: (msg: string, fields?: Record<string, unknown>): void => write('error', msg, fields),
};

const lastLogged = new Map<string, { at: number; suppressed: number }>();

/** Logs under `key` at most once per `intervalMs`; the line says how many were suppressed. */
export function every(key: string, intervalMs: number, level: Level, msg: string, fields?: Record<string, unknown>): void {
  const now = Date.now();
  const state = lastLogged.get(key);
  if (state !== undefined && now - state.at < intervalMs) {
    state.suppressed++;
    return;
  }
  write(level, msg, { ...fields, ...(state?.suppressed ? { suppressed: state.suppressed } : {}) });
  lastLogged.set(key, { at: now, suppressed: 0 });
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
