/** Checks of a request head that node:http leaves to the server, shared by requests and upgrades. */
import type { IncomingMessage } from 'node:http';
import { MalformedRequestError, type ProxyError } from './errors.ts';

/** An HTTP/1.1 request without Host must be refused with 400 (RFC 9112 §3.2). */
export function headProblem(req: IncomingMessage): ProxyError | null {
  if (req.headers.host === undefined && req.httpVersionMajor === 1 && req.httpVersionMinor === 1) {
    return new MalformedRequestError('missing Host header (RFC 9112, section 3.2)');
  }
  return null;
}
