/**
 * Relays a response body to the client: source -> [transform] -> destination, chunk by chunk,
 * with backpressure (Readable.pipe), reporting the first failure once.
 *
 * Why not stream.pipeline: each call creates an AbortController and aborts it when the streams
 * finish, which builds a DOMException with a captured stack, and it watches every stream with
 * end-of-stream listeners. On a small exchange that was a third of the proxy's CPU per request
 * (`bench/RESULTS.md`). What pipeline's watchers did is done here or by the exchange:
 * - a source or transform that fails, or a source that closes before its end, is reported
 *   through `onFailure` (the caller cuts the client's response), and the transform is destroyed;
 * - a destination that closes early is the exchange's own 'close', which cancels the upstream
 *   request and so destroys the source (forward.ts).
 */
import type { Readable, Transform, Writable } from 'node:stream';

/** The source closed without an error before its end (pipeline's ERR_STREAM_PREMATURE_CLOSE). */
export class PrematureCloseError extends Error {
  readonly code = 'ERR_STREAM_PREMATURE_CLOSE';

  constructor() {
    super('the upstream body closed before its end');
  }
}

class Relay {
  readonly #source: Readable;
  readonly #transform: Transform | null;
  readonly #onFailure: (err: Error) => void;
  #failed = false;

  constructor(source: Readable, transform: Transform | null, onFailure: (err: Error) => void) {
    this.#source = source;
    this.#transform = transform;
    this.#onFailure = onFailure;
  }

  fail(err: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    if (this.#transform !== null && !this.#transform.destroyed) this.#transform.destroy();
    this.#onFailure(err);
  }

  sourceClosed(): void {
    const source = this.#source;
    if (!source.readableEnded && source.errored === null) this.fail(new PrematureCloseError());
  }
}

export function relay(source: Readable, transform: Transform | null, destination: Writable, onFailure: (err: Error) => void): void {
  const state = new Relay(source, transform, onFailure);
  source.once('error', (err: Error) => state.fail(err));
  source.once('close', () => state.sourceClosed());
  // Without a listener of ours, an 'error' on the destination would be rethrown by pipe().
  destination.once('error', (err: Error) => state.fail(err));
  if (transform === null) {
    source.pipe(destination);
    return;
  }
  transform.once('error', (err: Error) => state.fail(err));
  source.pipe(transform).pipe(destination);
}
