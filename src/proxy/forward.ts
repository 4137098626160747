/**
 * The hot path: one HTTP exchange, client -> upstream -> client, as streams with backpressure.
 * Bodies are never held whole; taps see each chunk as it passes. The exchange ends exactly
 * once, when the client's response closes, and its outcome is decided by what happened first.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ClientAbortedError, describeError, upstreamError, type ProxyError } from './errors.ts';
import { clientResponseHeaders, forwardedHeaders, upstreamRequestHeaders } from './headers.ts';
import { newExchange, type Exchange, type ObserverSet, type Taps } from './observer.ts';
import { originFormTarget, type Router } from './routes.ts';

export interface ForwarderOptions {
  dispatcher: Dispatcher;
  router: Router;
  observers: ObserverSet;
  /** Request headers never forwarded upstream (lower-case), e.g. the institution header. */
  dropHeaders: ReadonlySet<string>;
  forwardedHeaders: boolean;
  /** Refuses a request before it is forwarded (draining, audit unavailable), or null. */
  admission: () => ProxyError | null;
  /** Optional rewrite of the request/response bodies (STREAM_USAGE=inject). */
  bodyRewriter?: BodyRewriter;
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

function tapStream(taps: Taps): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      taps.requestChunk(chunk);
      callback(null, chunk);
    },
  });
}

/** Sends an OpenAI-shaped error, or cuts the connection if the response has already started. */
export function respondWithError(res: ServerResponse, err: ProxyError): void {
  if (res.destroyed || res.writableEnded) return;
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const { status, body } = describeError(err);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function createForwarder(options: ForwarderOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const { dispatcher, router, observers, dropHeaders } = options;

  return function forward(req, res) {
    const exchange = newExchange(req, 'http');
    const taps = observers.start(exchange);
    const abort = new AbortController();
    res.setHeader('x-proxy-request-id', exchange.id);
    res.once('close', () => {
      exchange.endHr = performance.now();
      if (exchange.error === null && !res.writableFinished) {
        exchange.error = new ClientAbortedError('client closed the connection before the response was complete');
      }
      // Only an unfinished exchange has an upstream request left to cancel.
      if (!res.writableFinished) abort.abort();
      taps.end();
    });
    const fail = (err: ProxyError): void => {
      exchange.error ??= err;
      respondWithError(res, err);
    };

    const refused = options.admission();
    if (refused !== null) return fail(refused);
    let target: string;
    try {
      target = originFormTarget(req.url);
    } catch (err) {
      return fail(err as ProxyError);
    }
    const upstream = router.resolve(target);
    exchange.origin = upstream.origin;
    const headers = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, dropHeaders);
    if (options.forwardedHeaders) {
      headers.push(...forwardedHeaders(req.headers, req.socket.remoteAddress, 'encrypted' in req.socket));
    }
    taps.upstreamRequest(headers);

    const plan = options.bodyRewriter?.plan(exchange) ?? null;
    let body: Readable | Buffer | null = hasBody(req) ? req : null;
    if (body !== null && taps.wantsRequestBody) body = pipeline(req, tapStream(taps), () => undefined);

    const send = (payload: Readable | Buffer | null): void => {
      exchange.upstreamStartHr = performance.now();
      dispatcher.request(
        { origin: upstream.origin, path: upstream.path, method: exchange.method, headers, body: payload, signal: abort.signal },
        (err, data) => {
          if (err !== null) return fail(upstreamError(err, upstream.origin, false));
          respond(data);
        },
      );
    };

    const respond = (data: Dispatcher.ResponseData): void => {
      const { statusCode, body: upstreamBody } = data;
      exchange.status = statusCode;
      exchange.responseHeadHr = performance.now();
      const responseHeaders = clientResponseHeaders(data.headers);
      const transform = plan?.responseTransform(statusCode, responseHeaders) ?? null;
      taps.responseHead(statusCode, responseHeaders);
      responseHeaders['server-timing'] = serverTiming(exchange, performance.now(), responseHeaders['server-timing']);
      res.writeHead(statusCode, responseHeaders);
      // pipeline calls back with undefined, not null, on success.
      const onDone = (err: Error | null | undefined): void => {
        if (err === null || err === undefined) return;
        if (res.destroyed) exchange.error ??= upstreamError(err, upstream.origin, true);
        else fail(upstreamError(err, upstream.origin, true));
      };
      upstreamBody.once('error', (err) => {
        exchange.error ??= upstreamError(err, upstream.origin, true);
      });
      if (transform === null) pipeline(upstreamBody, res, onDone);
      else pipeline(upstreamBody, transform, res, onDone);
      if (taps.wantsResponseBody) upstreamBody.on('data', (chunk: Buffer) => taps.responseChunk(chunk));
    };

    if (plan === null || body === null || Buffer.isBuffer(body)) return send(body);
    plan.rewriteRequest(body).then(
      (rewritten) => {
        if (Buffer.isBuffer(rewritten)) setHeader(headers, 'content-length', String(rewritten.length));
        send(rewritten);
      },
      (err: unknown) => fail(upstreamError(err, upstream.origin, false)),
    );
  };
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
