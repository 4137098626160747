/** An API key's fingerprint and hint: how the audit record, the policy and the CLI name a key without keeping it. */
import { hash } from 'node:crypto';

export function fingerprint(key: string): string {
  return `sha256:${hash('sha256', key, 'hex').slice(0, 16)}`;
}

export interface ApiKeyIdentity {
  fingerprint: string;
  /** `sk-…` and the last four characters (none for a key of eight or fewer). */
  hint: string;
}

export function identify(key: string | null): ApiKeyIdentity | null {
  if (key === null) return null;
  const last4 = key.length > 8 ? key.slice(-4) : '';
  return { fingerprint: fingerprint(key), hint: `${key.startsWith('sk-') ? 'sk-' : ''}…${last4}` };
}
