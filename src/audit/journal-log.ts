/**
 * The journal's log: failures at most once per 10 s (a full disk fails every write), and a
 * logger that throws must not take the writer down.
 */

const ERROR_LOG_INTERVAL_MS = 10_000;

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  return code ? `${code}: ${err.message}` : err.message;
}

export class ErrorLog {
  #lastErrorAt = -Infinity;
  #suppressed = 0;

  constructor(
    private readonly prefix: string,
    private readonly log: (msg: string) => void,
  ) {}

  info(msg: string): void {
    try {
      this.log(`${this.prefix}: ${msg}`);
    } catch {
      // Nowhere left to report it.
    }
  }

  error(what: string, err: unknown): void {
    const now = Date.now();
    if (now - this.#lastErrorAt < ERROR_LOG_INTERVAL_MS) {
      this.#suppressed++;
      return;
    }
    const more = this.#suppressed > 0 ? ` (and ${this.#suppressed} more errors since the last report)` : '';
    this.#lastErrorAt = now;
    this.#suppressed = 0;
    this.info(`${what}: ${describe(err)}${more}`);
  }
}
