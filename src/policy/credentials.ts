/**
 * Where a client's OpenAI key can be, in the order the proxy reads them: `Authorization: Bearer`
 * (OpenAI), `api-key` (Azure OpenAI), `openai-api-key`, and the Realtime API's WebSocket
 * subprotocol `openai-insecure-api-key.<key>` (browsers cannot set headers on a WebSocket;
 * https://platform.openai.com/docs/guides/realtime-websocket).
 */
import type { IncomingHttpHeaders } from 'node:http';

export type CredentialPlace = 'authorization' | 'api-key' | 'openai-api-key' | 'subprotocol';

export interface Credential {
  readonly key: string;
  readonly place: CredentialPlace;
}

// RFC 9110 §11.1: the auth scheme is case-insensitive.
const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;
export const SUBPROTOCOL_KEY_PREFIX = 'openai-insecure-api-key.';

/** The key in a subprotocol entry, whatever the case of its prefix; null for other entries. */
export function subprotocolKey(protocol: string): string | null {
  const entry = protocol.trim();
  if (entry.length <= SUBPROTOCOL_KEY_PREFIX.length) return null;
  return entry.slice(0, SUBPROTOCOL_KEY_PREFIX.length).toLowerCase() === SUBPROTOCOL_KEY_PREFIX
    ? entry.slice(SUBPROTOCOL_KEY_PREFIX.length)
    : null;
}

/** Every credential the request carries, first the one the proxy goes by. */
export function credentialsOf(headers: IncomingHttpHeaders): Credential[] {
  const out: Credential[] = [];
  const bearer = headers.authorization === undefined ? null : BEARER.exec(headers.authorization);
  if (bearer?.[1] !== undefined) out.push({ key: bearer[1], place: 'authorization' });
  for (const place of ['api-key', 'openai-api-key'] as const) {
    const value = headers[place];
    const key = (Array.isArray(value) ? value[0] : value)?.trim();
    if (key !== undefined && key !== '') out.push({ key, place });
  }
  const protocols = headers['sec-websocket-protocol'];
  if (protocols !== undefined) {
    for (const protocol of protocols.split(',')) {
      const key = subprotocolKey(protocol);
      if (key !== null && key !== '') out.push({ key, place: 'subprotocol' });
    }
  }
  return out;
}
