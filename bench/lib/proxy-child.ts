// The proxy as `npm start` runs it (package.json's Node flags, the compiled dist/main.js, env only),
// in a child with its own AUDIT_DIR, optionally under a lower open-file limit (`ulimit -n` through bash).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { Journal } from './journal.ts';
import { log } from './log.ts';
import { CALLER_SETTINGS, PROXY_ENTRY, ROOT } from './paths.ts';
import { track } from './processes.ts';
import { freePort, httpOk, waitReady } from './ready.ts';
import { RUNTIME_FLAGS } from './runtime-flags.ts';

export interface ProxyChild {
  name: string;
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
  adminUrl: string;
  auditDir: string;
  journal: Journal;
  logPath: string;
}

export interface ProxyChildOptions {
  name: string;
  workDir: string;
  upstreamUrl: string;
  /** Added to (or, with undefined, removed from) the environment the proxy reads. */
  env?: Readonly<Record<string, string | undefined>>;
  /** `ulimit -n` for the proxy alone. */
  fdLimit?: number;
}

/** Compiles src/ to dist/ (`npm run build`), so the proxy started is this tree's. */
export function compileProxy(): void {
  log('compiling src/ to dist/ (npm run build)');
  execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
}

export async function startProxyChild(options: ProxyChildOptions): Promise<ProxyChild> {
  const [port, adminPort] = [await freePort(), await freePort()];
  const auditDir = join(options.workDir, `audit-${options.name}`);
  mkdirSync(auditDir, { recursive: true });
  const logPath = join(options.workDir, `${options.name}.stderr.log`);
  // The proxy is measured as the default start, whatever tracing or MongoDB the caller has set.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !CALLER_SETTINGS.test(key)));
  Object.assign(env, {
    HOST: '127.0.0.1',
    PORT: String(port),
    ADMIN_PORT: String(adminPort),
    UPSTREAM_URL: options.upstreamUrl,
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: auditDir,
    METRICS_ENABLED: 'true',
  });
  for (const [key, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  const nodeArgs = [...RUNTIME_FLAGS, PROXY_ENTRY];
  const [command, args] = options.fdLimit === undefined
    ? [process.execPath, nodeArgs]
    // exec: the pid we hold is the proxy's own, so RSS and /proc/PID/fd are the proxy's.
    : ['/bin/bash', ['-c', `ulimit -n ${options.fdLimit} && exec "$0" "$@"`, process.execPath, ...nodeArgs]];
  const fd = openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = track(spawn(command, args, { cwd: ROOT, env, stdio: ['ignore', 'ignore', fd] }));
  } finally {
    closeSync(fd);
  }
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  await waitReady(options.name, child, () => httpOk(`${adminUrl}/readyz`), logPath);
  return {
    name: options.name,
    child,
    pid: child.pid ?? 0,
    port,
    url: `http://127.0.0.1:${port}`,
    adminUrl,
    auditDir,
    journal: new Journal(auditDir),
    logPath,
  };
}
