/**
 * The client-facing server: plain HTTP or HTTPS (needed for `wss://`), tuned for streaming,
 * answering malformed HTTP itself so it is never forwarded.
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Config } from '../config.ts';

type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;
type UpgradeHandler = (req: http.IncomingMessage, socket: Duplex, head: Buffer) => void;

interface ParserError extends Error {
  code?: string;
}

function clientErrorStatus(err: ParserError): { status: number; message: string } {
  if (err.code === 'HPE_HEADER_OVERFLOW') return { status: 431, message: 'request headers too large' };
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, message: 'request timed out' };
  return { status: 400, message: `malformed HTTP request (${err.code ?? 'parse error'})` };
}

/** Answers a request the HTTP parser refused, in the OpenAI error shape, then closes. */
function onClientError(err: ParserError, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const { status, message } = clientErrorStatus(err);
  const body = JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: 'malformed_request' } });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

export function createProxyServer(config: Config, onRequest: RequestHandler, onUpgrade: UpgradeHandler): http.Server {
  const options: http.ServerOptions = {
    // SSE chunks must leave as soon as they arrive: no Nagle delay.
    noDelay: true,
    // Uploads and long generations may take longer than Node's 5-minute default.
    requestTimeout: 0,
    keepAliveTimeout: 65_000,
  };
  const server =
    config.tls === null
      ? http.createServer(options, onRequest)
      : https.createServer({ ...options, cert: config.tls.cert, key: config.tls.key }, onRequest);
  server.on('clientError', onClientError);
  server.on('upgrade', onUpgrade);
  return server;
}
