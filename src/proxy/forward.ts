/**
 * The hot path: one HTTP exchange, client -> upstream -> client, as streams with backpressure.
 * Bodies are never held whole; taps see each chunk as it passes. The exchange ends exactly
 * once, when the client's response closes, and its outcome is decided by what happened first.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { pipeline, Readable } from 'node:stream';
import type { Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import { decided, type AdmissionDecision, type AdmissionHook } from './admission.ts';
import { ClientAbortedError, ClientTimeoutError, describeError, upstreamError, type ProxyError } from './errors.ts';
import { clientResponseHeaders, forwardedHeaders, REQUEST_ID_HEADER, upstreamRequestHeaders } from './headers.ts';
import { newExchange, type Exchange, type Observers, type Taps } from './observer.ts';
import { headProblem } from './request-head.ts';
import type { Router, UpstreamTarget } from './routes.ts';

export interface ForwarderOptions {
  dispatcher: Dispatcher;
  router: Router;
  observers: Observers;
  /** Request headers never forwarded upstream (lower-case), e.g. the institution header. */
  dropHeaders: ReadonlySet<string>;
  forwardedHeaders: boolean;
  /** Decides before anything is forwarded: refuse, or forward with the rewrites it gives. */
  admission: AdmissionHook;
  /** Optional rewrite of the request/response bodies (STREAM_USAGE=inject). */
  bodyRewriter?: BodyRewriter;
  /** CLIENT_BODY_TIMEOUT_MS: the longest the request body may send no byte. */
  bodyTimeoutMs: number;
  /** Why an exchange cut short was cut, when it was not the client (the shutdown), or null. */
  cutReason: () => ProxyError | null;
}

export interface Forwarder {
  forward(req: IncomingMessage, res: ServerResponse): void;
  /** Records and answers a request refused before anything is forwarded. */
  refuse(req: IncomingMessage, res: ServerResponse, err: ProxyError): void;
  /**
   * Fails the exchange in flight on this response because its request broke (a bad chunk):
   * upstream is aborted and the client answered `err`. False if none is in flight.
   */
  failRequest(res: ServerResponse, err: ProxyError): boolean;
}

/** A per-exchange body transformation; the core stays ignorant of what it does. */
export interface BodyRewriter {
  /** Returns a plan for this request, or null to forward bodies untouched. */
  plan(exchange: Exchange): BodyRewritePlan | null;
}

export interface BodyRewritePlan {
  /** Resolves to the body to send upstream: new bytes (sent with their Content-Length) or a stream. */
  rewriteRequest(body: Readable): Promise<Buffer | Readable>;
  /** A transform for the response body, or null to leave it as it is. */
  responseTransform(status: number, headers: Record<string, string | string[] | undefined>): Transform | null;
}

/** `Server-Timing`: the proxy's own time and upstream's time to the response head, in ms. */
function serverTiming(exchange: Exchange, now: number, prior: string | string[] | undefined): string {
  const upstreamMs = (exchange.responseHeadHr ?? now) - (exchange.upstreamStartHr ?? now);
  exchange.overheadMs = (exchange.upstreamStartHr ?? now) - exchange.startHr + (now - (exchange.responseHeadHr ?? now));
  const ours = `proxy;dur=${exchange.overheadMs.toFixed(3)}, upstream;dur=${upstreamMs.toFixed(3)}`;
  return prior === undefined ? ours : `${Array.isArray(prior) ? prior.join(', ') : prior}, ${ours}`;
}

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Cancels the upstream request of an exchange. undici takes an EventEmitter as a signal; an
 * AbortController would cost every exchange an EventTarget, for the few ever cancelled.
 */
class UpstreamCancel extends EventEmitter {
  aborted = false;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.emit('abort');
  }
}

/**
 * Ends the request stream as stream.pipeline does: the socket is detached first, so that it
 * stays open for the error response instead of being destroyed with the request.
 */
function abandonRequest(req: IncomingMessage, err: Error): void {
  if (req.destroyed) return;
  const detachable: { socket: unknown } = req;
  detachable.socket = null;
  req.destroy(err);
}

/**
 * The request body as undici reads it, each chunk shown to the taps as it arrives. The request
 * is read eagerly (up to the high-water mark) whoever consumes it, as pipe() would, so that a
 * body upstream never took is still captured. A plain Readable fed by the request: a Transform
 * joined by stream.pipeline costs several times as much (two stream states, pipe and
 * end-of-stream plumbing, and pipeline's AbortController, created and aborted on every call).
 */
class TappedRequestBody extends Readable {
  readonly #req: IncomingMessage;

  constructor(req: IncomingMessage, taps: Taps) {
    super();
    this.#req = req;
    req.on('data', (chunk: Buffer) => {
      taps.requestChunk(chunk);
      if (!this.push(chunk)) req.pause();
    });
    req.once('end', () => this.push(null));
    // A request cut short fails the body undici is sending. (Two listeners where stream.finished
    // would add six and a dozen closures: a request that fails always emits 'close' too.)
    req.once('error', (err: Error) => this.destroy(err));
    req.once('close', () => {
      if (!req.readableEnded) this.destroy(req.errored ?? new Error('the request closed before its end'));
    });
  }

  override _read(): void {
    this.#req.resume();
  }

  // A body undici gave up on before its end abandons the request, as stream.pipeline would.
  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#req.readableEnded) abandonRequest(this.#req, err ?? new Error('the request body was abandoned'));
    callback(err);
  }
}

/**
 * Sends an OpenAI-shaped error, or cuts the connection if the response has already started.
 * `close`: the request was not read to its end, so the connection cannot carry another.
 */
function respondWithError(res: ServerResponse, err: ProxyError, requestId: string, close = false): void {
  if (res.destroyed || res.writableEnded) return;
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const { status, body, headers: own } = describeError(err);
  const headers: Record<string, string | number> = {
    ...own,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    [REQUEST_ID_HEADER]: requestId,
  };
  if (close) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(body);
}

/** The exchange being forwarded on each response, for `failRequest`. */
type InFlight = WeakMap<ServerResponse, ForwardedExchange>;

export function createForwarder(options: ForwarderOptions): Forwarder {
  // Each entry is deleted as its exchange closes, not left to the GC: V8's scavenges keep a
  // WeakMap entry's value alive, and the value (the exchange) holds its key (the response), so
  // only a full GC would free them; until then every exchange's objects are promoted.
  const inFlight: InFlight = new WeakMap();
  return {
    forward(req, res) {
      const exchange = new ForwardedExchange(options, req, res, inFlight);
      inFlight.set(res, exchange);
      exchange.start();
    },
    refuse(req, res, err) {
      new ForwardedExchange(options, req, res, null).refuse(err);
    },
    failRequest(res, err) {
      const exchange = inFlight.get(res);
      if (exchange === undefined || res.writableEnded || res.destroyed) return false;
      exchange.failRequest(err);
      return true;
    },
  };
}

/**
 * One exchange in flight. A class rather than closures over the request: the proxy runs under
 * tsx, whose esbuild keeps function names with an Object.defineProperty on every named arrow
 * function it creates, which makes each such closure some thirty times dearer to create.
 */
class ForwardedExchange {
  readonly #options: ForwarderOptions;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #exchange: Exchange;
  readonly #taps: Taps;
  readonly #cancel = new UpstreamCancel();
  #origin = '';
  #closed = false;

  readonly #inFlight: InFlight | null;

  constructor(options: ForwarderOptions, req: IncomingMessage, res: ServerResponse, inFlight: InFlight | null) {
    this.#options = options;
    this.#req = req;
    this.#res = res;
    this.#inFlight = inFlight;
    this.#exchange = newExchange(req, 'http');
    this.#taps = options.observers.start(this.#exchange);
    res.once('close', () => this.#onClose());
  }

  start(): void {
    const options = this.#options;
    const req = this.#req;
    const malformed = headProblem(req);
    if (malformed !== null) return this.refuse(malformed);
    const decision = options.admission(this.#exchange);
    if (decision instanceof Promise) {
      void decided(decision).then((d) => this.#admitted(d));
      return;
    }
    this.#admitted(decision);
  }

  #admitted(decision: AdmissionDecision): void {
    // The client left while a shared limit store answered: its exchange has ended, nothing goes upstream.
    if (this.#closed) return;
    const options = this.#options;
    const req = this.#req;
    this.#exchange.identity = decision.identity;
    if (decision.refusal !== null) return this.#fail(decision.refusal);
    if (this.#exchange.targetError !== null) return this.#fail(this.#exchange.targetError);
    const upstream = options.router.resolve(this.#exchange);
    this.#origin = upstream.origin;
    this.#exchange.origin = upstream.origin;
    this.#exchange.upstreamPath = upstream.pathname;
    let headers = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, options.dropHeaders);
    if (options.forwardedHeaders) {
      headers.push(...forwardedHeaders(req.headers, req.socket.remoteAddress, 'encrypted' in req.socket));
    }
    this.#taps.upstreamRequest(headers);
    // After the taps: what they keep of the head is what the client sent (never a swapped-in key).
    if (decision.rewrite !== null) headers = decision.rewrite.headers(headers);

    const plan = options.bodyRewriter?.plan(this.#exchange) ?? null;
    let body: Readable | null = hasBody(req) ? req : null;
    if (body !== null) this.#watchBody();
    if (body !== null && this.#taps.wantsRequestBody) body = new TappedRequestBody(req, this.#taps);

    if (plan === null || body === null) return this.#send(upstream, headers, body, plan);
    plan.rewriteRequest(body).then(
      (rewritten) => {
        if (Buffer.isBuffer(rewritten)) setHeader(headers, 'content-length', String(rewritten.length));
        this.#send(upstream, headers, rewritten, plan);
      },
      (err: unknown) => this.#fail(upstreamError(err, upstream.origin, false)),
    );
  }

  #send(upstream: UpstreamTarget, headers: string[], body: Readable | Buffer | null, plan: BodyRewritePlan | null): void {
    const exchange = this.#exchange;
    exchange.upstreamStartHr = performance.now();
    this.#options.dispatcher.request(
      { origin: upstream.origin, path: upstream.path, method: exchange.method, headers, body, signal: this.#cancel },
      (err, data) => {
        if (err !== null) return this.#fail(upstreamError(err, upstream.origin, false));
        this.#respond(data, plan);
      },
    );
  }

  #respond(data: Dispatcher.ResponseData, plan: BodyRewritePlan | null): void {
    const { statusCode, body: upstreamBody } = data;
    const exchange = this.#exchange;
    const res = this.#res;
    exchange.status = statusCode;
    exchange.responseHeadHr = performance.now();
    const responseHeaders = clientResponseHeaders(data.headers);
    const transform = plan?.responseTransform(statusCode, responseHeaders) ?? null;
    this.#taps.responseHead(statusCode, responseHeaders);
    responseHeaders['server-timing'] = serverTiming(exchange, performance.now(), responseHeaders['server-timing']);
    responseHeaders[REQUEST_ID_HEADER] = exchange.id;
    res.writeHead(statusCode, responseHeaders);
    // An event stream's head goes out now: a reasoning model may think long before its first event.
    if (String(responseHeaders['content-type'] ?? '').startsWith('text/event-stream')) res.flushHeaders();
    // An upstream body that breaks cuts the client's response too (respondWithError destroys a
    // started one), classified before the pipeline reports the client side closing.
    upstreamBody.once('error', (err: Error) => this.#failMidResponse(err));
    const streams = transform === null ? [upstreamBody, res] : [upstreamBody, transform, res];
    pipeline(streams, (err) => this.#failMidResponse(err));
    if (this.#taps.wantsResponseBody) upstreamBody.on('data', (chunk: Buffer) => this.#taps.responseChunk(chunk));
  }

  /** Also the pipeline's callback, which calls back with null (or undefined) on success. */
  #failMidResponse(err: Error | null | undefined): void {
    if (err !== null && err !== undefined) this.#fail(upstreamError(err, this.#origin, true));
  }

  #fail(err: ProxyError): void {
    this.#exchange.error ??= err;
    respondWithError(this.#res, err, this.#exchange.id);
  }

  /** A request refused as it arrived: its body is never read, so the connection closes after. */
  refuse(err: ProxyError): void {
    this.#exchange.error ??= err;
    respondWithError(this.#res, err, this.#exchange.id, true);
  }

  /**
   * The request broke off for the client's fault (a bad chunk, a stalled body): upstream, which
   * may have the head and part of the body, is aborted and never sees a complete request.
   */
  failRequest(err: ProxyError): void {
    this.#exchange.error ??= err;
    // Detached first, so that the socket stays open for the answer.
    abandonRequest(this.#req, err);
    this.#cancel.abort();
    respondWithError(this.#res, err, this.#exchange.id, true);
  }

  /**
   * CLIENT_BODY_TIMEOUT_MS as the socket's inactivity timer, which node refreshes on every read
   * (no timer of our own per chunk), from the head to the body's end.
   */
  #watchBody(): void {
    const req = this.#req;
    const socket = req.socket;
    const timeoutMs = this.#options.bodyTimeoutMs;
    socket.setTimeout(timeoutMs);
    req.on('timeout', () => {
      // Not the client's stall when the proxy itself is not reading (upstream's backpressure).
      if (req.isPaused() || req.readableLength > 0) return void socket.setTimeout(timeoutMs);
      this.failRequest(new ClientTimeoutError(`no byte of the request body for ${timeoutMs} ms (CLIENT_BODY_TIMEOUT_MS)`));
    });
    // After a response already finished, the socket's timer is node's keep-alive one.
    req.once('end', () => this.#res.writableFinished || socket.setTimeout(0));
  }

  #onClose(): void {
    this.#closed = true;
    const exchange = this.#exchange;
    const res = this.#res;
    this.#inFlight?.delete(res);
    exchange.endHr = performance.now();
    if (exchange.error === null && !res.writableFinished) {
      exchange.error = this.#options.cutReason() ?? new ClientAbortedError('client closed the connection before the response was complete');
    }
    // Only an unfinished exchange has an upstream request left to cancel.
    if (!res.writableFinished) this.#cancel.abort();
    this.#taps.end();
  }
}

function setHeader(flat: string[], name: string, value: string): void {
  for (let i = 0; i < flat.length; i += 2) {
    if ((flat[i] as string).toLowerCase() === name) {
      flat.splice(i, 2);
      i -= 2;
    }
  }
  flat.push(name, value);
}
