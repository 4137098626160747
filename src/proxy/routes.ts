/**
 * Where a request goes: the configured upstream, or the origin of the longest matching
 * UPSTREAM_ROUTES prefix. Only configured origins are ever contacted, whatever the client's
 * request target or Host header says.
 */
import type { UpstreamRoute } from '../config.ts';
import { InvalidRequestTargetError } from './errors.ts';

export interface UpstreamTarget {
  /** scheme://host[:port], what undici dials. */
  origin: string;
  /** Path and query sent upstream. */
  path: string;
}

interface Route {
  prefix: string;
  origin: string;
  basePath: string;
}

function toRoute(prefix: string, url: URL): Route {
  return { prefix, origin: url.origin, basePath: url.pathname.replace(/\/$/, '') };
}

export class Router {
  readonly #routes: Route[];
  readonly #fallback: Route;

  constructor(upstreamUrl: URL, routes: readonly UpstreamRoute[]) {
    this.#fallback = toRoute('/', upstreamUrl);
    // Longest prefix first, so the first match is the most specific.
    this.#routes = routes
      .map((r) => toRoute(r.prefix, new URL(r.origin)))
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /** Every origin the proxy may contact. */
  origins(): string[] {
    return [...new Set([this.#fallback.origin, ...this.#routes.map((r) => r.origin)])];
  }

  resolve(target: string): UpstreamTarget {
    const route = this.#routes.find((r) => target.startsWith(r.prefix)) ?? this.#fallback;
    return { origin: route.origin, path: route.basePath + target };
  }
}

/**
 * The origin-form path of a request target. An absolute-form target (`GET http://x/y`) is
 * reduced to its path: the authority is the client's claim and never chooses the upstream.
 */
export function originFormTarget(url: string | undefined): string {
  if (url === undefined || url === '') throw new InvalidRequestTargetError('empty request target');
  if (url.charCodeAt(0) === 47 /* / */) return url;
  const match = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(url);
  // The target itself is not echoed: it may carry a key in its query string.
  if (match === null) throw new InvalidRequestTargetError('unsupported request target (expected a path or an absolute URI)');
  const rest = url.slice(match[0].length);
  return rest.startsWith('/') ? rest : `/${rest}`;
}

/** Splits a target into path and query (without the `?`), as the audit record stores them. */
export function splitTarget(target: string): { path: string; query: string | null } {
  const q = target.indexOf('?');
  return q === -1 ? { path: target, query: null } : { path: target.slice(0, q), query: target.slice(q + 1) };
}
