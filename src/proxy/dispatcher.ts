/**
 * The upstream HTTP client: one undici Agent (a keep-alive Pool per origin), or an
 * EnvHttpProxyAgent when HTTP(S)_PROXY sends traffic through a corporate egress proxy.
 */
import { rootCertificates } from 'node:tls';
import { Agent, EnvHttpProxyAgent, type Dispatcher } from 'undici';
import type { Config } from '../config.ts';

/** The slice of the configuration the upstream client uses. */
export type DispatcherConfig = Pick<Config, 'upstreamCa' | 'upstreamMaxConnections' | 'upstreamTimeoutMs' | 'egressProxy'>;

export function createDispatcher(config: DispatcherConfig): Dispatcher {
  const ca = config.upstreamCa === null ? undefined : [...rootCertificates, config.upstreamCa.toString('utf8')];
  const agentOptions: Agent.Options = {
    // No cap by default: a streaming completion holds its connection for minutes.
    connections: config.upstreamMaxConnections,
    headersTimeout: config.upstreamTimeoutMs,
    bodyTimeout: config.upstreamTimeoutMs,
    connect: ca === undefined ? undefined : { ca },
  };
  const { httpProxy, httpsProxy, noProxy } = config.egressProxy;
  if (httpProxy === null && httpsProxy === null) return new Agent(agentOptions);
  return new EnvHttpProxyAgent({
    ...agentOptions,
    httpProxy: httpProxy ?? undefined,
    httpsProxy: httpsProxy ?? undefined,
    noProxy: noProxy ?? undefined,
    requestTls: ca === undefined ? undefined : { ca },
  });
}
