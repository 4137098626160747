/**
 * WebSocket pass-through (the Realtime API): the upstream handshake happens first, with the
 * client's headers and subprotocols; only once upstream accepts does the client's handshake
 * complete, with the protocol upstream chose. Messages then flow both ways, close codes pass through.
 */
import type { Agent, IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { decided, type AdmissionDecision, type AdmissionHook } from './admission.ts';
import {
  ClientAbortedError,
  MalformedRequestError,
  MessageTooBigError,
  UnsupportedUpgradeError,
  upstreamError,
  type ProxyError,
} from './errors.ts';
import { REQUEST_ID_HEADER, upstreamRequestHeaders, type ResponseHeaders } from './headers.ts';
import { newExchange, type Exchange, type Observers, type Taps } from './observer.ts';
import { writeRawError, writeRawResponse } from './raw-response.ts';
import { headProblem } from './request-head.ts';
import type { Router } from './routes.ts';

export interface WebSocketProxyOptions {
  router: Router;
  observers: Observers;
  dropHeaders: ReadonlySet<string>;
  /** Decides before the upstream handshake: refuse, or open it with the rewrites it gives. */
  admission: AdmissionHook;
  upstreamCa: Buffer | null;
  handshakeTimeoutMs: number;
  /** The agent that tunnels to an upstream origin through the egress proxy, or undefined. */
  egressAgent: (origin: string) => Agent | undefined;
  /** WS_MAX_MESSAGE_BYTES: ws's maxPayload toward the client and toward upstream. */
  maxMessageBytes: number;
  /** Why a session cut short was cut, when it was not the client (the shutdown), or null. */
  cutReason: () => ProxyError | null;
}

export interface WebSocketClose {
  code: number;
  reason: string;
  /** `proxy`: the proxy closed both sides (a message over WS_MAX_MESSAGE_BYTES). */
  by: 'client' | 'upstream' | 'proxy';
}

/** A WebSocket exchange also knows how the session closed. */
export interface WebSocketExchange extends Exchange {
  close: WebSocketClose | null;
}

// An upstream handshake refusal (an OpenAI error body) is relayed whole up to this size.
const MAX_REFUSAL_BYTES = 1024 * 1024;
// Above this much unsent data toward one side, stop reading from the other.
const HIGH_WATER = 4 * 1024 * 1024;

// The close code for a message too big to process (RFC 6455 §7.4.1); ws sends it to the offender.
const MESSAGE_TOO_BIG = 1009;

function rejectHandshake(socket: Duplex, exchange: Exchange, err: ProxyError): void {
  exchange.error ??= err;
  writeRawError(socket, err, { [REQUEST_ID_HEADER]: exchange.id });
}

function toWebSocketUrl(origin: string, path: string): string {
  return (origin.startsWith('https:') ? 'wss:' : 'ws:') + origin.slice(origin.indexOf(':') + 1) + path;
}

function headerObject(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < flat.length; i += 2) {
    const name = (flat[i] as string).toLowerCase();
    const value = flat[i + 1] as string;
    out[name] = name in out ? `${out[name]}, ${value}` : value;
  }
  return out;
}

/** A close code a peer may legally send; 1005/1006 only describe what happened. */
function sendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

function relay(from: WebSocket, to: WebSocket, direction: 'client' | 'upstream', taps: Taps): void {
  from.on('message', (data: RawData, isBinary: boolean) => {
    const chunk = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
    taps.message(direction, chunk, isBinary);
    if (to.readyState !== WebSocket.OPEN) return;
    to.send(chunk, { binary: isBinary }, () => {
      if (from.isPaused && to.bufferedAmount < HIGH_WATER / 2) from.resume();
    });
    if (to.bufferedAmount > HIGH_WATER) from.pause();
  });
}

function closeOther(target: WebSocket, code: number, reason: Buffer): void {
  if (target.readyState === WebSocket.CLOSED || target.readyState === WebSocket.CLOSING) return;
  if (code === 1006) return void target.terminate();
  if (sendableCode(code)) target.close(code, reason);
  else target.close();
}

export function createWebSocketProxy(options: WebSocketProxyOptions): (req: IncomingMessage, socket: Duplex, head: Buffer) => void {
  const chosenProtocol = new WeakMap<IncomingMessage, string>();
  const server = new WebSocketServer({
    noServer: true,
    maxPayload: options.maxMessageBytes,
    handleProtocols: (_protocols, req) => chosenProtocol.get(req) ?? false,
  });
  const extraHeaders = new WeakMap<IncomingMessage, string[]>();
  server.on('headers', (lines: string[], req: IncomingMessage) => lines.push(...(extraHeaders.get(req) ?? [])));

  return function upgrade(req, socket, head) {
    const exchange: WebSocketExchange = { ...newExchange(req, 'websocket'), close: null };
    const taps = options.observers.start(exchange);
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      exchange.endHr = performance.now();
      taps.end();
    };
    socket.once('close', end);
    socket.on('error', () => socket.destroy());

    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      return rejectHandshake(socket, exchange, new UnsupportedUpgradeError('only WebSocket upgrades are proxied; send HTTP/1.1 without Upgrade'));
    }
    const malformed = headProblem(req);
    if (malformed !== null) return rejectHandshake(socket, exchange, malformed);
    const pending = options.admission(exchange);
    if (pending instanceof Promise) {
      void decided(pending).then(admitted);
      return;
    }
    admitted(pending);

    function admitted(decision: AdmissionDecision): void {
      // The client may have gone while a shared limit store answered.
      if (socket.destroyed) return;
      exchange.identity = decision.identity;
      if (decision.refusal !== null) return rejectHandshake(socket, exchange, decision.refusal);
      const rewrite = decision.rewrite;
      if (exchange.targetError !== null) return rejectHandshake(socket, exchange, exchange.targetError);
      const resolved = options.router.resolve(exchange);
      exchange.origin = resolved.origin;
      exchange.upstreamPath = resolved.pathname;
      let flat = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, options.dropHeaders, true);
      taps.upstreamRequest(flat);
      // After the taps: what they keep of the head is what the client sent (never a swapped-in key).
      if (rewrite !== null) flat = rewrite.headers(flat);
      const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim()).filter((p) => p !== '');
      const protocols = rewrite === null ? offered : rewrite.subprotocols(offered);

      exchange.upstreamStartHr = performance.now();
      let upstream: WebSocket;
      try {
        // ws refuses (synchronously) duplicate or invalid subprotocols and URLs with a fragment.
        upstream = new WebSocket(toWebSocketUrl(resolved.origin, resolved.path.split('#')[0] ?? ''), protocols, {
          headers: headerObject(flat),
          ca: options.upstreamCa ?? undefined,
          handshakeTimeout: options.handshakeTimeoutMs,
          maxPayload: options.maxMessageBytes,
          agent: options.egressAgent(resolved.origin),
        });
      } catch (err) {
        return rejectHandshake(socket, exchange, new MalformedRequestError(`cannot open the upstream WebSocket: ${(err as Error).message}`));
      }
      const clientGone = (): void => {
        if (upstream.readyState === WebSocket.CONNECTING) {
          exchange.error ??= options.cutReason() ?? new ClientAbortedError('client closed the connection during the WebSocket handshake');
          upstream.terminate();
        }
      };
      socket.once('close', clientGone);

      let upstreamResponseHeaders: Record<string, string | string[] | undefined> = {};
      upstream.once('upgrade', (response: IncomingMessage) => {
        upstreamResponseHeaders = response.headers;
      });
      upstream.once('unexpected-response', (_request, response: IncomingMessage) => {
        exchange.status = response.statusCode ?? 502;
        exchange.responseHeadHr = performance.now();
        const chunks: Buffer[] = [];
        let size = 0;
        // A refusal body is small; one that breaks off or never ends must not hold the client.
        const broken = (): void => {
          exchange.error ??= upstreamError(Object.assign(new Error('upstream refusal broke off'), { code: 'ECONNRESET' }), resolved.origin, true);
          socket.destroy();
        };
        response.once('error', broken);
        response.once('aborted', broken);
        response.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_REFUSAL_BYTES) return void response.destroy(new Error('refusal body too large'));
          chunks.push(c);
        });
        response.once('end', () => {
          const relayed: ResponseHeaders = {};
          for (const [k, v] of Object.entries(response.headers)) {
            if (!['connection', 'transfer-encoding', 'content-length', 'keep-alive'].includes(k) && v !== undefined) relayed[k] = v;
          }
          const body = Buffer.concat(chunks);
          // Through the taps like any response, so the record keeps the refusal's head and body.
          const status = exchange.status ?? 502;
          taps.responseHead(status, relayed);
          if (body.length > 0 && taps.wantsResponseBody) taps.responseChunk(body);
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(relayed)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
          headers[REQUEST_ID_HEADER] = exchange.id;
          writeRawResponse(socket, status, headers, body);
        });
      });
      upstream.once('error', (err) => {
        if (exchange.status !== null) return;
        rejectHandshake(socket, exchange, upstreamError(err, resolved.origin, false));
      });
      upstream.once('open', () => {
        socket.off('close', clientGone);
        exchange.status = 101;
        exchange.responseHeadHr = performance.now();
        // The client is confirmed its own entry (a rewritten one, such as a swapped key, stays upstream's).
        const chosen = rewrite === null ? upstream.protocol : rewrite.clientSubprotocol(upstream.protocol, offered);
        if (chosen !== '') chosenProtocol.set(req, chosen);
        const requestId = upstreamResponseHeaders['x-request-id'];
        extraHeaders.set(req, [`${REQUEST_ID_HEADER}: ${exchange.id}`, ...(typeof requestId === 'string' ? [`x-request-id: ${requestId}`] : [])]);
        // ws answers a bad client handshake itself and never calls back: the upstream must not outlive it.
        const orphaned = (): void => upstream.terminate();
        socket.once('close', orphaned);
        server.handleUpgrade(req, socket, head, (client) => {
          socket.off('close', orphaned);
          socket.off('close', end);
          bridge(client, upstream, exchange, taps, end, options.cutReason);
        });
      });
    }
  };
}

function bridge(
  client: WebSocket,
  upstream: WebSocket,
  exchange: WebSocketExchange,
  taps: Taps,
  end: () => void,
  cutReason: () => ProxyError | null,
): void {
  relay(client, upstream, 'client', taps);
  relay(upstream, client, 'upstream', taps);
  let open = 2;
  const closed = (): void => {
    if (--open === 0) end();
  };
  client.once('close', (code: number, reason: Buffer) => {
    exchange.close ??= { code, reason: reason.toString('utf8'), by: 'client' };
    if (code === 1006) {
      const cut = cutReason();
      if (cut !== null) exchange.error ??= cut;
    }
    closeOther(upstream, code, reason);
    closed();
  });
  upstream.once('close', (code: number, reason: Buffer) => {
    exchange.close ??= { code, reason: reason.toString('utf8'), by: 'upstream' };
    if (code === 1006 && exchange.close.by === 'upstream') {
      exchange.error ??= upstreamError(Object.assign(new Error('upstream WebSocket closed abnormally'), { code: 'ECONNRESET' }), exchange.origin ?? '', true);
    }
    closeOther(client, code, reason);
    closed();
  });
  // ws has already sent 1009 to the side whose message was too big and closes it; the other
  // side gets 1009 too, and the record says the proxy closed both.
  const tooBig = (offender: 'client' | 'upstream', other: WebSocket): void => {
    const reason = `message from ${offender} over WS_MAX_MESSAGE_BYTES`;
    exchange.close ??= { code: MESSAGE_TOO_BIG, reason, by: 'proxy' };
    exchange.error ??= new MessageTooBigError(`a message from the ${offender} was over WS_MAX_MESSAGE_BYTES; the session was closed 1009`);
    closeOther(other, MESSAGE_TOO_BIG, Buffer.from(reason));
  };
  client.on('error', (err: Error & { code?: string }) => {
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') tooBig('client', upstream);
    else client.terminate();
  });
  upstream.on('error', (err: Error & { code?: string }) => {
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') tooBig('upstream', client);
    else upstream.terminate();
  });
}
