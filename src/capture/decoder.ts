/**
 * Undoes a Content-Encoding (gzip, deflate, br) on a copy of a body's chunks with node:zlib
 * streams and hands the content to a callback, while the proxy forwards the encoded bytes.
 * Codings: RFC 9110 §8.4.1, https://www.rfc-editor.org/rfc/rfc9110#section-8.4.1
 */
import type { Transform } from 'node:stream';
import { finished } from 'node:stream/promises';
import { constants, createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';

export interface ContentDecoderOptions {
  /** Abandon decoding (see `cutShort`) rather than queue more encoded bytes than this for zlib. */
  maxQueuedBytes?: number;
}

// Sync-flush finishing lets a body cut short (client abort, decoding abandoned) yield what
// it decoded instead of failing with "unexpected end of file".
const ZLIB_OPTIONS = { finishFlush: constants.Z_SYNC_FLUSH };
const BROTLI_OPTIONS = { finishFlush: constants.BROTLI_OPERATION_FLUSH };

/**
 * `push` each chunk as it passes, then `await end()`. Identity content reaches `onContent`
 * synchronously, as the very chunk pushed; encoded content arrives later, from zlib's threads.
 * Decompression stays on zlib streams: the sync APIs cannot stop at a cap (`maxOutputLength`
 * throws instead of truncating), and a stream spreads the work over the body's chunks.
 */
export class ContentDecoder {
  readonly #onContent: (chunk: Buffer) => void;
  readonly #maxQueued: number;
  readonly #zlib: Transform | null;
  readonly #done: Promise<void>;
  #open: boolean;
  #queued = 0;
  #failed: boolean;
  #cutShort = false;

  constructor(contentEncoding: string | null, onContent: (chunk: Buffer) => void, options: ContentDecoderOptions = {}) {
    this.#onContent = onContent;
    this.#maxQueued = options.maxQueuedBytes ?? Number.POSITIVE_INFINITY;
    const zlib = zlibFor(contentEncoding);
    this.#zlib = zlib === 'identity' || zlib === 'unsupported' ? null : zlib;
    this.#failed = zlib === 'unsupported';
    this.#open = !this.#failed;
    this.#done = this.#zlib === null ? Promise.resolve() : this.#watch(this.#zlib);
  }

  /** Content is being decompressed (not handed over as pushed). */
  get decoding(): boolean {
    return this.#zlib !== null;
  }

  /** The encoding cannot be undone (unknown, or a chain of encodings), or zlib rejected the data. */
  get failed(): boolean {
    return this.#failed;
  }

  /** Decoding was abandoned because zlib fell `maxQueuedBytes` behind: the content is a prefix. */
  get cutShort(): boolean {
    return this.#cutShort;
  }

  push(chunk: Buffer): void {
    if (!this.#open) return;
    if (this.#zlib === null) {
      this.#onContent(chunk);
      return;
    }
    if (this.#queued > this.#maxQueued) {
      this.#cutShort = true;
      this.#closeInput();
      return;
    }
    const size = chunk.length;
    this.#queued += size;
    this.#zlib.write(chunk, () => {
      this.#queued -= size;
    });
  }

  /** No more content is wanted: drops the zlib stream and whatever is queued for it. */
  stop(): void {
    this.#open = false;
    this.#zlib?.destroy();
  }

  /** Resolves once all decoded content has reached `onContent`; never rejects. */
  end(): Promise<void> {
    this.#closeInput();
    return this.#done;
  }

  #closeInput(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#zlib?.end();
  }

  #watch(zlib: Transform): Promise<void> {
    zlib.on('data', (out: Buffer) => this.#onContent(out));
    zlib.on('error', () => {
      this.#failed = true;
    });
    // Rejects on errors (recorded above) and on stop() (wanted): either way the content is over.
    return finished(zlib).catch(() => undefined);
  }
}

function zlibFor(contentEncoding: string | null): Transform | 'identity' | 'unsupported' {
  switch (contentEncoding?.trim().toLowerCase() ?? '') {
    case '':
    case 'identity':
      return 'identity';
    case 'gzip':
    case 'x-gzip':
      return createGunzip(ZLIB_OPTIONS);
    case 'deflate':
      return createInflate(ZLIB_OPTIONS);
    case 'br':
      return createBrotliDecompress(BROTLI_OPTIONS);
    default:
      return 'unsupported';
  }
}
