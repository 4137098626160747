/**
 * STREAM_USAGE=inject: a streamed chat/completions request that did not ask for usage gets
 * `stream_options.include_usage` upstream, and the extra usage chunk is removed from what the
 * client receives, so billing always sees the tokens. Only those requests are buffered (they
 * are small JSON); anything larger than the limit is forwarded untouched. What is buffered
 * counts against the memory budget: past it the request is refused (503) rather than held.
 */
import { Readable } from 'node:stream';
import { injectIncludeUsage, UsageChunkStripper } from './stream-usage.ts';
import { UNBOUNDED, type MemoryAccount } from '../memory-budget.ts';
import { ProxyOverloadedError } from '../proxy/errors.ts';
import type { BodyRewriter, BodyRewritePlan } from '../proxy/forward.ts';
import type { Exchange } from '../proxy/observer.ts';

const LIMIT_BYTES = 8 * 1024 * 1024;
const STREAMING_PATHS = /\/(chat\/)?completions$/;

/**
 * Reads the body whole, unless it passes the limit: then what was read is replayed ahead of the
 * rest. Every chunk held is reserved in `memory` first, and given back once the body is handed
 * on (to the upstream connection); a chunk that does not fit refuses the request, and the rest
 * of the body is read and discarded so the 503 leaves the connection usable.
 */
function readUpTo(body: Readable, limit: number, memory: MemoryAccount): Promise<Buffer | Readable> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      if (!memory.tryReserve(chunk.length)) {
        cleanup();
        chunks.length = 0;
        body.resume();
        reject(new ProxyOverloadedError('the proxy is holding as much as its memory budget allows; retry shortly'));
        return;
      }
      chunks.push(chunk);
      size += chunk.length;
      if (size <= limit) return;
      body.pause();
      cleanup();
      resolve(Readable.from(replay(chunks, body), { objectMode: false }));
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      memory.release(size);
      body.off('data', onData).off('end', onEnd).off('error', onError);
    };
    body.on('data', onData).once('end', onEnd).once('error', onError);
  });
}

async function* replay(head: Buffer[], rest: Readable): AsyncGenerator<Buffer> {
  yield* head;
  for await (const chunk of rest) yield chunk as Buffer;
}

export class StreamUsageInjector implements BodyRewriter {
  readonly #injected = new WeakSet<Exchange>();
  readonly #memory: MemoryAccount;
  readonly #appliesTo: ((exchange: Exchange) => boolean) | null;

  /** `appliesTo`: only the exchanges it accepts are asked for usage (null: every one, STREAM_USAGE=inject). */
  constructor(memory: MemoryAccount = UNBOUNDED, appliesTo: ((exchange: Exchange) => boolean) | null = null) {
    this.#memory = memory;
    this.#appliesTo = appliesTo;
  }

  injected(exchange: Exchange): boolean {
    return this.#injected.has(exchange);
  }

  plan(exchange: Exchange): BodyRewritePlan | null {
    if (exchange.method !== 'POST' || !STREAMING_PATHS.test(exchange.path)) return null;
    if (!(exchange.req.headers['content-type'] ?? '').includes('json') || exchange.req.headers['content-encoding'] !== undefined) return null;
    if (this.#appliesTo !== null && !this.#appliesTo(exchange)) return null;
    return {
      rewriteRequest: async (body) => {
        const read = await readUpTo(body, LIMIT_BYTES, this.#memory);
        if (!Buffer.isBuffer(read)) return read;
        const { body: rewritten, injected } = injectIncludeUsage(read);
        if (injected) this.#injected.add(exchange);
        return rewritten;
      },
      responseTransform: (status, headers) => {
        const sse = String(headers['content-type'] ?? '').startsWith('text/event-stream');
        return this.#injected.has(exchange) && status === 200 && sse && headers['content-encoding'] === undefined
          ? new UsageChunkStripper()
          : null;
      },
    };
  }
}
