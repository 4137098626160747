/**
 * Starts the proxy in-process on loopback with ephemeral ports, configured from an env-like
 * object exactly as production reads the environment, with the same runtime wiring as main.ts.
 * Not a fake: the real app.
 */
import { startProxy, type RunningProxy } from '../../src/app.ts';
import { loadConfig, type Config } from '../../src/config.ts';
import { createRuntime, type Runtime } from '../../src/runtime.ts';

export interface TestProxy extends RunningProxy {
  config: Config;
  runtime: Runtime;
  close(): Promise<void>;
}

export const BASE_ENV: Record<string, string> = {
  HOST: '127.0.0.1',
  PORT: '0',
  ADMIN_PORT: '0',
  AUDIT_ENABLED: 'false',
  METRICS_ENABLED: 'false',
};

export async function startTestProxy(env: Record<string, string>): Promise<TestProxy> {
  const fullEnv = { ...BASE_ENV, ...env };
  const config = loadConfig(fullEnv);
  const runtime = await createRuntime(config);
  const proxy = await startProxy(config, runtime.components);
  return {
    ...proxy,
    config,
    runtime,
    close: async () => {
      await proxy.drain(0);
      await runtime.close();
    },
  };
}
