/**
 * Whose exchange is this: the order of shared/design/policy-file.md ("Identity, in order").
 * 1. a virtual key (the proxy issued it; its upstream key is swapped in before forwarding),
 * 2. a client-held key an institution lists in `keys`,
 * 3. the institution header, believed only from a `trustedFrom` peer,
 * 4. none, or 401 institution_required when `requireInstitution`.
 * A key decides before any header. A disabled or unknown proxy-issued key is refused (401
 * invalid_api_key) so that it never reaches OpenAI. Pure: headers, peer and policy in, identity out.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { fingerprint } from '../fingerprint.ts';
import { type Credential, credentialsOf } from './credentials.ts';
import { InstitutionRequiredError, InvalidApiKeyError } from './errors.ts';
import type { Policy, VirtualKey } from './types.ts';
import { isProxyIssued } from './virtual-key-format.ts';

export type InstitutionSource = 'virtual_key' | 'key' | 'header';

export interface Identity {
  readonly institution: string | null;
  /** The record's `institutionSource`. */
  readonly source: InstitutionSource | null;
  /** The credential the proxy went by, as the client sent it. */
  readonly credential: Credential | null;
  /** Of that credential (for a virtual key, of the virtual key: records never see the real one). */
  readonly fingerprint: string | null;
  /** Set when the credential is a virtual key: forward with its upstream key instead. */
  readonly virtualKey: VirtualKey | null;
}

const NOBODY: Identity = Object.freeze({ institution: null, source: null, credential: null, fingerprint: null, virtualKey: null });

/** Throws InvalidApiKeyError or InstitutionRequiredError (both ProxyErrors: describeError answers the client). */
export function resolveIdentity(policy: Policy, headers: IncomingHttpHeaders, peerAddress: string | undefined): Identity {
  const credentials = credentialsOf(headers);
  const credential = credentials[0] ?? null;
  if (credential !== null) {
    refuseSecondProxyKey(policy, credential, credentials);
    const print = fingerprint(credential.key);
    const virtualKey = policy.virtualKeys.get(print);
    if (virtualKey !== undefined) {
      if (virtualKey.disabled) throw new InvalidApiKeyError('Incorrect API key provided: this key has been revoked.');
      return { institution: virtualKey.institution, source: 'virtual_key', credential, fingerprint: print, virtualKey };
    }
    if (isProxyIssued(credential.key)) {
      throw new InvalidApiKeyError('Incorrect API key provided: this proxy did not issue this key, or it has been deleted.');
    }
    const institution = policy.keyInstitutions.get(print);
    if (institution !== undefined) return { institution, source: 'key', credential, fingerprint: print, virtualKey: null };
    const fromHeader = trustedHeader(policy, headers, peerAddress);
    if (fromHeader !== null) return { institution: fromHeader, source: 'header', credential, fingerprint: print, virtualKey: null };
    if (policy.requireInstitution) throw institutionRequired();
    return { ...NOBODY, credential, fingerprint: print };
  }
  const fromHeader = trustedHeader(policy, headers, peerAddress);
  if (fromHeader !== null) return { ...NOBODY, institution: fromHeader, source: 'header' };
  if (policy.requireInstitution) throw institutionRequired();
  return NOBODY;
}

function institutionRequired(): InstitutionRequiredError {
  return new InstitutionRequiredError('This proxy requires an institution: use an API key it knows, or send the institution header from a trusted address.');
}

function trustedHeader(policy: Policy, headers: IncomingHttpHeaders, peerAddress: string | undefined): string | null {
  const { name, trustedFrom } = policy.institutionHeader;
  const value = headers[name];
  if (value === undefined || !trustedFrom.has(peerAddress)) return null;
  const first = (Array.isArray(value) ? value[0] : value)?.trim();
  return first === undefined || first === '' ? null : first;
}

/**
 * Only the first credential is swapped; a proxy-issued key anywhere else would go upstream
 * as it is (and a client could be billed as one institution while sending another's key).
 */
function refuseSecondProxyKey(policy: Policy, first: Credential, all: readonly Credential[]): void {
  for (let i = 1; i < all.length; i++) {
    const other = (all[i] as Credential).key;
    if (other === first.key) continue;
    if (isProxyIssued(other) || policy.virtualKeys.has(fingerprint(other))) {
      throw new InvalidApiKeyError('More than one API key was sent and one of them was issued by this proxy: send only one.');
    }
  }
}
