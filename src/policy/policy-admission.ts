/**
 * The policy's part of admission: whose exchange this is (identity.ts, the contract's order) and
 * what the core must change on the way upstream: the virtual key swapped for its upstream key
 * wherever the client put it, and the policy's institution header left out. The policy is taken
 * once per exchange; a reload mid-exchange does not change what this exchange was decided under.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { identify } from '../fingerprint.ts';
import type { AdmissionDecision, AdmissionHook, ExchangeIdentity, UpstreamRewrite } from '../proxy/admission.ts';
import { refusedBy } from '../proxy/admission.ts';
import { ProxyError } from '../proxy/errors.ts';
import type { Exchange } from '../proxy/observer.ts';
import { clientSubprotocol, swapCredentialHeaders, swapSubprotocols } from './credential-swap.ts';
import { limitsFor } from './effective.ts';
import { type Identity, resolveIdentity } from './identity.ts';
import type { Limiter } from './limits.ts';
import type { Policy } from './types.ts';

/**
 * `admitted` learns the policy each exchange was admitted under (its prices price the exchange);
 * `limiter`, when given, counts and refuses by the limits that apply after identity is known.
 */
export function policyAdmission(current: () => Policy, admitted?: (exchange: Exchange, policy: Policy) => void, limiter?: Limiter): AdmissionHook {
  return (exchange) => {
    const policy = current();
    admitted?.(exchange, policy);
    const req = exchange.req;
    let identity: Identity;
    try {
      identity = resolveIdentity(policy, req.headers, req.socket.remoteAddress);
    } catch (err) {
      if (err instanceof ProxyError) return refusedBy(err);
      throw err;
    }
    const facts: ExchangeIdentity = {
      institution: identity.institution,
      source: identity.source,
      apiKey: identify(identity.credential?.key ?? null),
    };
    if (limiter !== undefined) {
      // No limit applies: the lookup is all the work (limitsFor).
      const limits = limitsFor(policy, identity.institution, identity.virtualKey);
      if (limits.institution.length > 0 || limits.virtualKey.length > 0) {
        const over = limiter.admit(exchange, limits, identity.institution, identity.virtualKey?.fingerprint ?? null, policy.quotaStoreDown);
        // A promise only when the counts are shared (MONGODB_URI): one round trip to the store.
        if (over instanceof Promise) return over.then((refusal) => (refusal !== null ? refusedBy(refusal, facts) : forwarded(policy, identity, facts, req.headers)));
        if (over !== null) return refusedBy(over, facts);
      }
    }
    return forwarded(policy, identity, facts, req.headers);
  };
}

function forwarded(policy: Policy, identity: Identity, facts: ExchangeIdentity, headers: IncomingHttpHeaders): AdmissionDecision {
  const swap = identity.virtualKey === null ? null : identity.virtualKey.upstreamKey;
  const header = policy.institutionHeader.name;
  if (swap === null && headers[header] === undefined) return { refusal: null, identity: facts, rewrite: null };
  const virtualKey = identity.credential?.key ?? '';
  return { refusal: null, identity: facts, rewrite: new PolicyRewrite(header, swap === null ? null : { virtualKey, upstream: swap }) };
}

interface Swap {
  virtualKey: string;
  /** Revealed only when the headers are built: nothing else holds the real key as a string. */
  upstream: { reveal(): string };
}

class PolicyRewrite implements UpstreamRewrite {
  readonly #dropHeader: string;
  readonly #swap: Swap | null;

  constructor(dropHeader: string, swap: Swap | null) {
    this.#dropHeader = dropHeader;
    this.#swap = swap;
  }

  headers(flat: readonly string[]): string[] {
    const kept: string[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      // The institution header says whom to bill; OpenAI has no use for it (contract: never forwarded).
      if ((flat[i] as string).toLowerCase() !== this.#dropHeader) kept.push(flat[i] as string, flat[i + 1] as string);
    }
    return this.#swap === null ? kept : swapCredentialHeaders(kept, this.#swap.virtualKey, this.#swap.upstream.reveal());
  }

  subprotocols(offered: readonly string[]): string[] {
    return this.#swap === null ? offered.slice() : swapSubprotocols(offered, this.#swap.virtualKey, this.#swap.upstream.reveal());
  }

  clientSubprotocol(chosen: string, offered: readonly string[]): string {
    return clientSubprotocol(chosen, offered, this.subprotocols(offered));
  }
}
