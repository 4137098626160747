/**
 * Starts the proxy in-process on loopback with ephemeral ports, configured from an env-like
 * object exactly as production reads the environment. Not a fake: the real app.
 */
import { startProxy, type Components, type RunningProxy } from '../../src/app.ts';
import { loadConfig, type Config } from '../../src/config.ts';

export interface TestProxy extends RunningProxy {
  config: Config;
  close(): Promise<void>;
}

export const BASE_ENV: Record<string, string> = {
  HOST: '127.0.0.1',
  PORT: '0',
  ADMIN_PORT: '0',
  AUDIT_ENABLED: 'false',
  METRICS_ENABLED: 'false',
};

export async function startTestProxy(env: Record<string, string>, components: Partial<Components> = {}): Promise<TestProxy> {
  const config = loadConfig({ ...BASE_ENV, ...env });
  const proxy = await startProxy(config, {
    observers: [],
    admission: [],
    metrics: null,
    health: () => ({}),
    ...components,
  });
  return { ...proxy, config, close: () => proxy.drain(0) };
}
