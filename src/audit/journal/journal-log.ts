/**
 * The journal's log. A full disk fails every write: each kind of message goes out at most once
 * per 10 s, and a logger that throws must not take the writer down.
 */

const LOG_INTERVAL_MS = 10_000;

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.startsWith(code) ? `${code}: ${err.message}` : err.message;
}

export class JournalLog {
  readonly #windows = new Map<string, { at: number; held: number }>();

  constructor(
    private readonly prefix: string,
    private readonly sink: (msg: string) => void,
  ) {}

  info(msg: string): void {
    try {
      this.sink(`${this.prefix}: ${msg}`);
    } catch {
      // Nowhere left to report it.
    }
  }

  /** At most one message of this kind per 10 s; the next one says how many were held back. */
  limited(kind: string, msg: string): void {
    const now = Date.now();
    const window = this.#windows.get(kind) ?? { at: -Infinity, held: 0 };
    this.#windows.set(kind, window);
    if (now - window.at < LOG_INTERVAL_MS) {
      window.held++;
      return;
    }
    const held = window.held > 0 ? ` (${window.held} similar messages held back)` : '';
    window.at = now;
    window.held = 0;
    this.info(`${msg}${held}`);
  }

  error(what: string, err: unknown): void {
    this.limited('error', `${what}: ${describe(err)}`);
  }
}
