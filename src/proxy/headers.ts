/**
 * Header pass-through: everything the client and upstream send crosses the proxy except the
 * hop-by-hop headers of each connection (RFC 9110 §7.6.1) and `Host`, which becomes the upstream's.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** Added to every response and WebSocket handshake: the exchange's id, the audit record's `_id`. */
export const REQUEST_ID_HEADER = 'x-proxy-request-id';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'host',
  // Node's server has already answered `Expect: 100-continue`; undici refuses the header.
  'expect',
  // HTTP/2 pseudo-header names never appear here, but an http2 client through a gateway may send this.
  'http2-settings',
]);

const WEBSOCKET_HANDSHAKE = new Set([
  'sec-websocket-key',
  'sec-websocket-version',
  'sec-websocket-extensions',
  'sec-websocket-protocol',
  'sec-websocket-accept',
]);

function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  // Nearly every response says `keep-alive`, which names nothing beyond the fixed list.
  if (value === 'keep-alive') return null;
  const joined = Array.isArray(value) ? value.join(',') : value;
  const tokens = joined.split(',').map((t) => t.trim().toLowerCase()).filter((t) => t !== '');
  return tokens.length === 0 ? null : new Set(tokens);
}

function isHopByHop(name: string, named: Set<string> | null): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith('proxy-') || (named !== null && named.has(name));
}

/**
 * Request headers for upstream as undici's flat `[name, value, ...]` list, built from
 * `rawHeaders` so repeated headers and their order survive as the client sent them.
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  connection: string | string[] | undefined,
  drop: ReadonlySet<string>,
  websocket = false,
): string[] {
  const named = connectionTokens(connection);
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (isHopByHop(lower, named) || drop.has(lower)) continue;
    if (websocket && WEBSOCKET_HANDSHAKE.has(lower)) continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  return out;
}

export type ResponseHeaders = Record<string, string | string[] | undefined>;

/** Response headers for the client, minus the upstream connection's hop-by-hop ones. */
export function clientResponseHeaders(headers: ResponseHeaders): ResponseHeaders {
  const named = connectionTokens(headers.connection);
  const out: ResponseHeaders = {};
  for (const name in headers) {
    if (!isHopByHop(name, named)) out[name] = headers[name];
  }
  return out;
}

/** `X-Forwarded-For`/`-Proto`, appended to what an earlier hop sent; only for upstreams of one's own. */
export function forwardedHeaders(headers: IncomingHttpHeaders, address: string | undefined, secure: boolean): string[] {
  const prior = headers['x-forwarded-for'];
  const forwardedFor = [prior, address].filter((v) => v !== undefined && v !== '').join(', ');
  return ['x-forwarded-for', forwardedFor, 'x-forwarded-proto', secure ? 'https' : 'http'];
}
