/**
 * The egress proxy of WebSocket upstreams. HTTP goes through undici's EnvHttpProxyAgent; ws dials
 * with node:http, so its sessions get a CONNECT-tunnelling agent chosen by the same rules:
 * HTTPS_PROXY for a secure upstream (else HTTP_PROXY), HTTP_PROXY for a plain one, and NO_PROXY
 * entries (host, `.domain` or `*.domain` suffix, optional `:port`, or `*`) go direct.
 */
import type { Agent } from 'node:http';
import { HttpsProxyAgent } from 'https-proxy-agent';
import type { Config } from '../config.ts';

interface NoProxyEntry {
  hostname: string;
  port: number | null;
}

const DEFAULT_PORTS: Record<string, number> = { 'http:': 80, 'https:': 443 };

/** `host`, `host:port`, `[ipv6]:port`, or a bare IPv6 address (whose colons are no port). */
function parseEntry(item: string): NoProxyEntry | null {
  const match = item.split(':').length > 2 && !item.startsWith('[') ? [item, item] : /^\[?(.*?)\]?(?::(\d+))?$/.exec(item);
  const hostname = match?.[1]?.toLowerCase() ?? '';
  return hostname === '' ? null : { hostname, port: match?.[2] === undefined ? null : Number(match[2]) };
}

function parseNoProxy(value: string | null): NoProxyEntry[] {
  return (value ?? '').split(/[,\s]/).flatMap((item) => parseEntry(item.trim()) ?? []);
}

function exempt(entries: readonly NoProxyEntry[], hostname: string, port: number): boolean {
  return entries.some((entry) => {
    if (entry.port !== null && entry.port !== port) return false;
    if (entry.hostname === '*') return true;
    if (!/^[.*]/.test(entry.hostname)) return hostname === entry.hostname;
    return hostname.endsWith(entry.hostname.replace(/^\*/, ''));
  });
}

export class WebSocketEgress {
  readonly #httpProxy: string | null;
  readonly #httpsProxy: string | null;
  readonly #noProxy: NoProxyEntry[];
  // One agent per upstream origin: there are a handful (UPSTREAM_URL, UPSTREAM_ROUTES).
  readonly #agents = new Map<string, Agent | undefined>();

  constructor(egress: Config['egressProxy']) {
    this.#httpProxy = egress.httpProxy;
    this.#httpsProxy = egress.httpsProxy ?? egress.httpProxy;
    this.#noProxy = parseNoProxy(egress.noProxy);
  }

  /** The agent for an upstream origin (`http(s)://host[:port]`), or undefined to dial it directly. */
  agentFor(origin: string): Agent | undefined {
    if (this.#agents.has(origin)) return this.#agents.get(origin);
    const agent = this.#choose(new URL(origin));
    this.#agents.set(origin, agent);
    return agent;
  }

  #choose(url: URL): Agent | undefined {
    const proxy = url.protocol === 'https:' ? this.#httpsProxy : this.#httpProxy;
    if (proxy === null) return undefined;
    const port = url.port === '' ? (DEFAULT_PORTS[url.protocol] ?? 80) : Number(url.port);
    // The URL keeps IPv6 hosts in brackets; NO_PROXY entries are written without.
    const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
    return exempt(this.#noProxy, hostname, port) ? undefined : new HttpsProxyAgent(proxy);
  }
}
