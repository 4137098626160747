/**
 * Entry point: config -> telemetry -> audit -> servers, and a graceful shutdown on SIGTERM/SIGINT.
 */
import { startProxy } from './app.ts';
import { createRuntime } from './runtime.ts';
import { MongoShipperConfigError } from './audit/shipper/mongo.ts';
import { ConfigError, loadConfig } from './config.ts';
import { errorMessage, log } from './log.ts';
import { PolicyFileError } from './policy/policy-file.ts';

/** Every configuration error, whichever module finds it, stops start-up with one line and exit 2. */
function exitIfConfigError(err: unknown): void {
  if (err instanceof ConfigError || err instanceof MongoShipperConfigError) {
    process.stderr.write(`openai-api-proxy: invalid configuration: ${err.message}\n`);
    process.exit(2);
  }
  // A bad POLICY_FILE likewise, with one line per problem in the file.
  if (err instanceof PolicyFileError) {
    process.stderr.write(`openai-api-proxy: invalid policy file (POLICY_FILE):\n${err.problems.map((p) => `  ${p}\n`).join('')}`);
    process.exit(2);
  }
}

async function main(): Promise<void> {
  const config = loadConfig();
  const runtime = await createRuntime(config);
  const proxy = await startProxy(config, runtime.components);
  log.info('proxy listening', { url: proxy.url, admin: proxy.adminUrl, upstream: config.upstreamUrl.href });

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('draining', { signal, graceMs: config.shutdownGraceMs });
    proxy
      .drain(config.shutdownGraceMs)
      .then(() => runtime.close())
      .then(() => {
        log.info('stopped');
        process.exit(0);
      })
      .catch((err: unknown) => {
        log.error('shutdown failed', { error: errorMessage(err) });
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  exitIfConfigError(err);
  log.error('start-up failed', { error: errorMessage(err) });
  process.exit(1);
});
