/**
 * The client-facing server: plain HTTP or HTTPS (needed for `wss://`), tuned for streaming,
 * answering malformed HTTP itself so it is never forwarded, and bounding what a client holds:
 * time for its head, an idle connection, the number of connections.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config } from '../config.ts';
import { ClientAbortedError, ClientTimeoutError, HeadersTooLargeError, MalformedRequestError, TooManyConnectionsError, type ProxyError } from './errors.ts';
import { writeRawError } from './raw-response.ts';

type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
type SocketHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface ServerHandlers {
  request: RequestHandler;
  /** An `Expect` other than 100-continue, which node hands over instead of the request. */
  expectation: RequestHandler;
  upgrade: SocketHandler;
  connect: SocketHandler;
  /**
   * The parser refused bytes on a connection whose request is already being forwarded (a bad
   * chunk mid-body): true if that exchange answered for itself.
   */
  brokenRequest: (socket: Socket, err: ProxyError) => boolean;
  /** A connection was refused: MAX_CLIENT_CONNECTIONS were open. */
  refused: () => void;
}

interface ParserError extends Error {
  code?: string;
}

function parserError(err: ParserError): ProxyError {
  if (err.code === 'HPE_HEADER_OVERFLOW') return new HeadersTooLargeError('request headers too large');
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new ClientTimeoutError('the request head did not arrive within CLIENT_HEADERS_TIMEOUT_MS');
  return new MalformedRequestError(`malformed HTTP request (${err.code ?? 'parse error'})`);
}

// How long a refused connection stays open for its 503 to be read: closing with the client's
// request unread would reset the connection and could discard the answer (RFC 9112 §9.6).
const REFUSAL_LINGER_MS = 1000;

/** The slice of the configuration the server uses: the client limits and TLS. */
export type ServerConfig = Pick<Config, 'client' | 'tls'>;

export function createProxyServer(config: ServerConfig, handlers: ServerHandlers): http.Server {
  const limits = config.client;
  const options: http.ServerOptions & https.ServerOptions = {
    // SSE chunks must leave as soon as they arrive: no Nagle delay.
    noDelay: true,
    // No limit on a whole exchange: an upload or a long generation may take any time as long as
    // it moves (CLIENT_BODY_TIMEOUT_MS and UPSTREAM_TIMEOUT_MS are inactivity timers).
    requestTimeout: 0,
    // Explicit: from requestTimeout 0 node would derive headersTimeout 0, i.e. none.
    headersTimeout: limits.headersTimeoutMs,
    // How often node looks for heads past their time: the timeout's resolution.
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(limits.headersTimeoutMs / 10))),
    // Node closes an idle kept-alive connection 1 s after this (the Keep-Alive header says this).
    keepAliveTimeout: limits.idleTimeoutMs,
    // A missing Host gets an OpenAI-shaped 400 from the forwarder, not node's empty one.
    requireHostHeader: false,
  };
  const server =
    config.tls === null
      ? http.createServer(options)
      : https.createServer({ ...options, cert: config.tls.cert, key: config.tls.key, handshakeTimeout: limits.headersTimeoutMs });

  // Connections not yet past their first request head: idle until then.
  const fresh = new WeakSet<Duplex>();
  const refused = new WeakSet<Duplex>();
  const begin = (socket: Duplex): boolean => {
    if (refused.has(socket)) return false;
    if (fresh.delete(socket)) (socket as Socket).setTimeout(0);
    return true;
  };

  let open = 0;
  server.on('connection', (socket: Socket) => {
    if (open >= limits.maxConnections) {
      refused.add(socket);
      handlers.refused();
      // A TLS client cannot read a plaintext answer: it is closed before the handshake.
      if (config.tls !== null) return void socket.destroy();
      writeRawError(socket, new TooManyConnectionsError('too many connections to the proxy; retry shortly'), { 'retry-after': '1' });
      const linger = setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref();
      socket.once('close', () => clearTimeout(linger));
      return;
    }
    open++;
    socket.once('close', () => open--);
    if (config.tls === null) armIdle(socket);
  });
  // With TLS, node:http sees the decrypted socket.
  if (config.tls !== null) server.on('secureConnection', (socket: Socket) => armIdle(socket));

  // A connection that never sends its first byte is closed like an idle kept-alive one; node's
  // own timeout handler (installed on every connection) destroys it.
  function armIdle(socket: Socket): void {
    fresh.add(socket);
    socket.setTimeout(limits.idleTimeoutMs);
  }

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (begin(req.socket)) handlers.request(req, res);
    else req.resume();
  });
  server.on('checkExpectation', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (begin(req.socket)) handlers.expectation(req, res);
    else req.resume();
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (begin(socket)) handlers.upgrade(req, socket, head);
    else socket.destroy();
  });
  server.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (begin(socket)) handlers.connect(req, socket, head);
    else socket.destroy();
  });
  // Answers a request the HTTP parser refused, in the OpenAI error shape, then closes.
  server.on('clientError', (err: ParserError, socket: Socket) => {
    if (err.code === 'ECONNRESET' || !socket.writable || refused.has(socket)) return void socket.destroy();
    // The connection ended mid-message: the client went away, it sent nothing malformed.
    if (err.code === 'HPE_INVALID_EOF_STATE') {
      handlers.brokenRequest(socket, new ClientAbortedError('client closed the connection before the request was complete'));
      return void socket.destroy();
    }
    const error = parserError(err);
    if (handlers.brokenRequest(socket, error)) return;
    writeRawError(socket, error);
  });
  return server;
}
