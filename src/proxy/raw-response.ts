/**
 * Answers written straight onto a client socket, where node:http has no response object to
 * offer: a request its parser refused, an upgrade or CONNECT, a connection over the cap.
 * Every one closes the connection after it (RFC 9112 §9.6).
 */
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { describeError, type ProxyError } from './errors.ts';

/** An HTTP/1.1 response with a Content-Length and `Connection: close`, then the write side ends. */
export function writeRawResponse(socket: Duplex, status: number, headers: Record<string, string>, body: string | Buffer): void {
  if (!socket.writable) return void socket.destroy();
  const lines = Object.entries({ ...headers, 'content-length': String(Buffer.byteLength(body)), connection: 'close' })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(Buffer.concat([Buffer.from(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${lines}\r\n`), Buffer.from(body)]));
}

/** The OpenAI-shaped answer for a proxy error, as `describeError` words it. */
export function writeRawError(socket: Duplex, err: ProxyError, headers: Record<string, string> = {}): void {
  const { status, body, headers: own } = describeError(err);
  writeRawResponse(socket, status, { ...own, 'content-type': 'application/json', ...headers }, body);
}
