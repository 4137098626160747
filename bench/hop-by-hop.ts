// Header filtering shared by the two baseline pipes: drop hop-by-hop headers (RFC 9110 §7.6.1),
// including any named in Connection, exactly as any honest forward proxy must.

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export type HeaderBag = Record<string, string | string[] | undefined>;

/**
 * Copies end-to-end headers. For requests (`isRequest`) Host is left to the client library (the
 * upstream origin's) and Expect is dropped: node:http already answered 100-continue to the client.
 */
export function forwardHeaders(src: HeaderBag, isRequest: boolean): Record<string, string | string[]> {
  const connection = src['connection'];
  const listed = typeof connection === 'string' && connection.length > 0
    ? connection.toLowerCase().split(',').map((token) => token.trim())
    : [];
  const out: Record<string, string | string[]> = {};
  for (const name of Object.keys(src)) {
    const value = src[name];
    if (value === undefined || HOP_BY_HOP.has(name) || (isRequest && (name === 'host' || name === 'expect'))) continue;
    if (listed.length > 0 && listed.includes(name)) continue;
    out[name] = value;
  }
  return out;
}
