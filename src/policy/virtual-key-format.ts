/**
 * The shape of the keys this proxy issues: a fixed prefix (so a revoked or mistyped one is
 * recognised and refused instead of being sent to OpenAI) and 256 random bits in base62,
 * which survives headers, WebSocket subprotocol tokens and double-click selection intact.
 */
import { randomBytes } from 'node:crypto';

export const VIRTUAL_KEY_PREFIX = 'sk-proxy-';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_CHARS = 43; // 62^43 > 2^256

export function isProxyIssued(key: string): boolean {
  return key.startsWith(VIRTUAL_KEY_PREFIX);
}

/** A new key from the OS's CSPRNG; bytes >= 248 are skipped so each character is uniform. */
export function newVirtualKey(): string {
  let body = '';
  while (body.length < BODY_CHARS) {
    for (const byte of randomBytes(64)) {
      if (byte < 248 && body.length < BODY_CHARS) body += ALPHABET[byte % 62];
    }
  }
  return VIRTUAL_KEY_PREFIX + body;
}
