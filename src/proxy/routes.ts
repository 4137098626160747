/**
 * Where a request goes: the configured upstream, or the origin of the longest UPSTREAM_ROUTES
 * prefix matching whole segments of the request path. Only configured origins are ever
 * contacted, whatever the client's request target or Host header says, and never outside the
 * base path of the origin's URL: a target with dot segments is refused before it is routed.
 */
import type { UpstreamRoute } from '../config.ts';
import { InvalidRequestTargetError } from './errors.ts';

/** The origin-form request target, split once: what is routed, recorded, measured and traced. */
export interface RequestTarget {
  /** The absolute path, as the client sent it (percent-encoding untouched). */
  path: string;
  /** The raw query, without the `?`, or null without one. */
  query: string | null;
}

export interface UpstreamTarget {
  /** scheme://host[:port], what undici dials. */
  origin: string;
  /** The configured base path and the request path, without the query. */
  pathname: string;
  /** Path and query sent upstream. */
  path: string;
}

interface Route {
  /** The prefix without its trailing slash; '' for the fallback, which takes every path. */
  prefix: string;
  origin: string;
  basePath: string;
}

function toRoute(prefix: string, url: URL): Route {
  return { prefix: prefix.replace(/\/+$/, ''), origin: url.origin, basePath: url.pathname.replace(/\/$/, '') };
}

/** A prefix matches whole segments: `/backend-api/` takes `/backend-api` and `/backend-api/x`, not `/backend-apix`. */
function matches(prefix: string, path: string): boolean {
  return path.startsWith(prefix) && (path.length === prefix.length || path.charCodeAt(prefix.length) === 47 /* / */);
}

export class Router {
  readonly #routes: Route[];
  readonly #fallback: Route;

  constructor(upstreamUrl: URL, routes: readonly UpstreamRoute[]) {
    this.#fallback = toRoute('', upstreamUrl);
    // Longest prefix first, so the first match is the most specific.
    this.#routes = routes
      .map((r) => toRoute(r.prefix, new URL(r.origin)))
      .sort((a, b) => b.prefix.length - a.prefix.length);
  }

  /**
   * The upstream of a target from parseRequestTarget. Its path has no dot segment and starts
   * with `/`, so the base path followed by it stays under the base path.
   */
  resolve(target: RequestTarget): UpstreamTarget {
    const route = this.#routes.find((r) => matches(r.prefix, target.path)) ?? this.#fallback;
    const pathname = route.basePath + target.path;
    return { origin: route.origin, pathname, path: target.query === null ? pathname : `${pathname}?${target.query}` };
  }
}

const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i;

/**
 * The origin-form target of a request (RFC 9112 §3.2), split into path and query. An
 * absolute-form target (`POST http://api.openai.com/v1/x`, what clients behind HTTP_PROXY send)
 * is reduced to its path and query: its authority, userinfo included, is the client's claim,
 * never chooses the upstream and is never kept. A path with a dot segment is refused (see
 * hasDotSegment). Throws InvalidRequestTargetError.
 */
export function parseRequestTarget(url: string | undefined): RequestTarget {
  if (url === undefined || url === '') throw new InvalidRequestTargetError('empty request target');
  let target = url;
  if (url.charCodeAt(0) !== 47 /* / */) {
    const match = ABSOLUTE_FORM.exec(url);
    // The target itself is not echoed: it may carry a key in its query string.
    if (match === null) throw new InvalidRequestTargetError('unsupported request target (expected a path or an absolute URI)');
    const rest = url.slice(match[0].length);
    target = rest.startsWith('/') ? rest : `/${rest}`;
  }
  const split = splitTarget(target);
  if (hasDotSegment(split.path)) {
    throw new InvalidRequestTargetError('request path contains a dot segment ("." or "..", possibly percent-encoded); send the resolved path');
  }
  return split;
}

/**
 * What an exchange whose target was refused is recorded under: the origin-form path and query
 * when there is one (authority and userinfo gone), `*` for the asterisk form, otherwise nothing
 * of the target (it is not known to be free of a credential).
 */
export function refusedTarget(url: string | undefined): RequestTarget {
  if (url === undefined || url === '') return { path: '', query: null };
  if (url === '*') return { path: '*', query: null };
  if (url.charCodeAt(0) === 47 /* / */) return splitTarget(url);
  const match = ABSOLUTE_FORM.exec(url);
  if (match === null) return { path: '', query: null };
  const rest = url.slice(match[0].length);
  return splitTarget(rest.startsWith('/') ? rest : `/${rest}`);
}

/** Splits a target into path and query (without the `?`), as the audit record stores them. */
export function splitTarget(target: string): RequestTarget {
  const q = target.indexOf('?');
  return q === -1 ? { path: target, query: null } : { path: target.slice(0, q), query: target.slice(q + 1) };
}

const ENCODED_PERCENT = /%25/gi;
const ENCODED_DOT = /%2e/gi;
// `/`, its percent-encodings, and `\` with its own: servers that decode `%2F` before resolving, or
// that treat `\` as `/` (the WHATWG URL parser does, for ws: and http: URLs), split segments there.
const SEPARATOR = /%2f|%5c|\\/gi;
// The same rule for a path without percent-encoding.
const RAW_DOT_SEGMENT = /(?:^|[/\\])\.{1,2}(?:$|[/\\;])/;

/**
 * Whether a path has a `.` or `..` segment, raw or percent-encoded (`%2e%2e`, `.%2E`), also
 * where segments are split by an encoded slash or a backslash (`..%2f`, `..\`), behind a path
 * parameter (`..;x`, which Tomcat-style servers take as `..`), or encoded more than once
 * (`%252e`). Such a path is refused rather than resolved (RFC 3986 §5.2.4): a client resolves
 * dot segments before it sends a request (every SDK's URL parser does), so one that arrives is
 * an attempt to climb out of the configured base path, or at an upstream that decodes before
 * resolving; and a proxy that forwards bytes as the client sent them should not send a path
 * the client did not (RFC 9110 §4.2.3 leaves dot-segment removal to normalisation for
 * comparison, not to intermediaries). An encoded slash alone is not refused: ids may carry one.
 */
export function hasDotSegment(path: string): boolean {
  // Nearly every path has no percent sign: one regular expression tells.
  if (path.indexOf('%') === -1) return RAW_DOT_SEGMENT.test(path);
  let decoded = path;
  for (let i = 0; i < 3 && decoded.indexOf('%25') !== -1; i++) decoded = decoded.replace(ENCODED_PERCENT, '%');
  decoded = decoded.replace(ENCODED_DOT, '.').replace(SEPARATOR, '/');
  for (const segment of decoded.split('/')) {
    const name = segment.split(';', 1)[0];
    if (name === '.' || name === '..') return true;
  }
  return false;
}
