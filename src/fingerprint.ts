/** An API key's fingerprint: how the audit record, the policy and the CLI name a key without keeping it. */
import { hash } from 'node:crypto';

export function fingerprint(key: string): string {
  return `sha256:${hash('sha256', key, 'hex').slice(0, 16)}`;
}
