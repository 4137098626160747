/**
 * Puts the upstream key where the client put its virtual key, and only there: the same header
 * (keeping the `Bearer` scheme as the client spelt it) or the same subprotocol entry. Every
 * other header and protocol is left as the client sent it (the house rule: transparent).
 */
import { SUBPROTOCOL_KEY_PREFIX, subprotocolKey } from './credentials.ts';

const BEARER = /^(Bearer[ \t]+)(\S+)([ \t]*)$/i;

/** undici's flat `[name, value, ...]` request headers with the virtual key replaced wherever it is a credential. */
export function swapCredentialHeaders(flat: readonly string[], virtualKey: string, upstreamKey: string): string[] {
  const out = flat.slice();
  for (let i = 0; i < out.length; i += 2) {
    const name = (out[i] as string).toLowerCase();
    const value = out[i + 1] as string;
    if (name === 'authorization') {
      const match = BEARER.exec(value);
      if (match?.[2] === virtualKey) out[i + 1] = `${match[1] as string}${upstreamKey}${match[3] as string}`;
    } else if (name === 'api-key' || name === 'openai-api-key') {
      if (value.trim() === virtualKey) out[i + 1] = upstreamKey;
    } else if (name === 'sec-websocket-protocol') {
      out[i + 1] = swapSubprotocols(value.split(','), virtualKey, upstreamKey).join(',');
    }
  }
  return out;
}

/** The subprotocols to offer upstream, entry for entry the client's, the key's entry swapped. */
export function swapSubprotocols(protocols: readonly string[], virtualKey: string, upstreamKey: string): string[] {
  return protocols.map((protocol) => (subprotocolKey(protocol) === virtualKey ? swapOne(protocol, upstreamKey) : protocol));
}

/**
 * The protocol to confirm to the client for the one upstream chose: the client's own entry at
 * the same place, so a server that echoes the key entry never shows the client the real key.
 * Empty when it would carry a key the client did not offer.
 */
export function clientSubprotocol(chosen: string, sent: readonly string[], forwarded: readonly string[]): string {
  const index = forwarded.indexOf(chosen);
  if (index !== -1) return sent[index] as string;
  // Not one offered (a broken server): never pass on a key it made up or echoed.
  return subprotocolKey(chosen) === null ? chosen : '';
}

function swapOne(protocol: string, upstreamKey: string): string {
  const start = protocol.length - protocol.trimStart().length;
  const end = protocol.trimEnd().length;
  // Keeps the prefix as the client wrote it (any case) and the spaces around the entry.
  return `${protocol.slice(0, start + SUBPROTOCOL_KEY_PREFIX.length)}${upstreamKey}${protocol.slice(end)}`;
}
