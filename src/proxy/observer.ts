/**
 * The seam between the forwarding core and whatever watches it. Its vocabulary, used everywhere:
 * - an `Observer` watches every exchange (capture, metrics, tracing); at each exchange's start it
 *   may open a `Tap`, its view of that one exchange;
 * - `Observers` is the set of a running proxy's observers; `Observers.start` opens the taps of one
 *   exchange and returns them as `Taps`, the fan-out the core publishes the lifecycle to.
 * A tap that throws is counted and logged (its stage named), never felt by the client. What the
 * capture layer learns of an exchange (its facts) reaches audit, metrics and tracing through
 * capture/capture-observer.ts, not through here: the core knows nothing of bodies' meaning.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { ExchangeIdentity } from './admission.ts';
import { InvalidRequestTargetError, type ProxyError } from './errors.ts';
import type { ResponseHeaders } from './headers.ts';
import { parseRequestTarget, refusedTarget, type RequestTarget } from './routes.ts';

/** What the core knows of one exchange; observers read it, only the core writes it. */
export interface Exchange {
  readonly id: string;
  readonly kind: 'http' | 'websocket';
  readonly req: IncomingMessage;
  /** Epoch ms when the request arrived. */
  readonly startedAt: number;
  /** performance.now() when the request arrived; the other timings are on the same clock. */
  readonly startHr: number;
  readonly method: string;
  /**
   * The origin-form target's path and its raw query (null without `?`), split once for every
   * tap: what is routed is what is recorded, measured and traced. An absolute-form target's
   * authority (and userinfo) is gone. For a refused target, what refusedTarget keeps of it.
   */
  readonly path: string;
  readonly query: string | null;
  /** Why the request target is refused (dot segments, unsupported form), or null. */
  readonly targetError: InvalidRequestTargetError | null;
  origin: string | null;
  /** The path sent upstream (the origin's base path and the request path), without the query; null until routed. */
  upstreamPath: string | null;
  upstreamStartHr: number | null;
  responseHeadHr: number | null;
  status: number | null;
  error: ProxyError | null;
  endHr: number | null;
  /** Time the proxy spent on the exchange itself before and after upstream answered (ms). */
  overheadMs: number | null;
  /** Whose exchange this is, from the admission decision; null when admission did not say (or never ran). */
  identity: ExchangeIdentity | null;
}

/** A fresh exchange for a request that has just arrived. */
export function newExchange(req: IncomingMessage, kind: Exchange['kind']): Exchange {
  let target: RequestTarget;
  let targetError: InvalidRequestTargetError | null = null;
  try {
    target = parseRequestTarget(req.url);
  } catch (err) {
    // A refused target still gets its record (outcome rejected), under a path free of secrets.
    targetError = err instanceof InvalidRequestTargetError ? err : new InvalidRequestTargetError('invalid request target');
    target = refusedTarget(req.url);
  }
  const { path, query } = target;
  return {
    id: randomUUID(),
    kind,
    req,
    startedAt: Date.now(),
    startHr: performance.now(),
    method: req.method ?? 'GET',
    path,
    query,
    targetError,
    origin: null,
    upstreamPath: null,
    upstreamStartHr: null,
    responseHeadHr: null,
    status: null,
    error: null,
    endHr: null,
    overheadMs: null,
    identity: null,
  };
}

/**
 * One observer's view of one exchange, in lifecycle order:
 * upstreamRequest -> requestChunk* -> responseHead -> responseChunk* -> end (always, once).
 */
export interface Tap {
  /** Headers about to go upstream (flat name/value list); a tap may append to it. */
  upstreamRequest?(headers: string[]): void;
  requestChunk?(chunk: Buffer): void;
  /** Response head about to reach the client; a tap may add headers. */
  responseHead?(status: number, headers: ResponseHeaders): void;
  responseChunk?(chunk: Buffer): void;
  /** For WebSocket sessions: one message in either direction. */
  message?(direction: 'client' | 'upstream', data: Buffer, isBinary: boolean): void;
  end?(): void;
}

export interface Observer {
  /** Called when an exchange starts; returns a tap, or nothing to sit this exchange out. */
  start(exchange: Exchange): Tap | undefined;
}

/** The lifecycle stages a failure is counted under (openai_proxy_observer_failures_total{stage}). */
export type TapStage = 'start' | 'upstreamRequest' | 'requestChunk' | 'responseHead' | 'responseChunk' | 'message' | 'end';

export type TapFailureHandler = (error: unknown, stage: string) => void;

/** One exchange's taps: fans its events out to each, isolating each tap's failures. */
export class Taps {
  readonly #taps: Tap[];
  readonly #onFailure: TapFailureHandler;
  readonly wantsRequestBody: boolean;
  readonly wantsResponseBody: boolean;

  constructor(taps: Tap[], onFailure: TapFailureHandler) {
    this.#taps = taps;
    this.#onFailure = onFailure;
    this.wantsRequestBody = taps.some((t) => t.requestChunk !== undefined);
    this.wantsResponseBody = taps.some((t) => t.responseChunk !== undefined);
  }

  upstreamRequest(headers: string[]): void {
    for (const tap of this.#taps) this.#run('upstreamRequest', () => tap.upstreamRequest?.(headers));
  }

  // The per-chunk and per-message stages call their taps directly, without #run's closure:
  // they run for every chunk of every body.
  requestChunk(chunk: Buffer): void {
    for (const tap of this.#taps) {
      try {
        tap.requestChunk?.(chunk);
      } catch (err) {
        this.#onFailure(err, 'requestChunk');
      }
    }
  }

  responseHead(status: number, headers: ResponseHeaders): void {
    for (const tap of this.#taps) this.#run('responseHead', () => tap.responseHead?.(status, headers));
  }

  responseChunk(chunk: Buffer): void {
    for (const tap of this.#taps) {
      try {
        tap.responseChunk?.(chunk);
      } catch (err) {
        this.#onFailure(err, 'responseChunk');
      }
    }
  }

  message(direction: 'client' | 'upstream', data: Buffer, isBinary: boolean): void {
    for (const tap of this.#taps) {
      try {
        tap.message?.(direction, data, isBinary);
      } catch (err) {
        this.#onFailure(err, 'message');
      }
    }
  }

  end(): void {
    for (const tap of this.#taps) this.#run('end', () => tap.end?.());
  }

  #run(stage: TapStage, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#onFailure(err, stage);
    }
  }
}

/** The observers of a running proxy; `start` opens the taps of one exchange. */
export class Observers {
  readonly #observers: Observer[] = [];
  readonly #onFailure: TapFailureHandler;

  constructor(onFailure: TapFailureHandler) {
    this.#onFailure = onFailure;
  }

  add(observer: Observer): void {
    this.#observers.push(observer);
  }

  start(exchange: Exchange): Taps {
    const taps: Tap[] = [];
    for (const observer of this.#observers) {
      try {
        const tap = observer.start(exchange);
        if (tap !== undefined) taps.push(tap);
      } catch (err) {
        this.#onFailure(err, 'start');
      }
    }
    return new Taps(taps, this.#onFailure);
  }
}
