// What is measured: the upstream reached directly, the two baseline pipes and the proxy variants
// (and, with --before, the same variants of another tree), each a child process with its own port,
// and how each one is started.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, httpOk, tcpOpen, waitReady } from './ready.ts';
import type { BeforeTree } from './before-tree.ts';
import { CALLER_SETTINGS, PROXY_ENTRY } from './paths.ts';
import { spawnNode, spawnNodeArgs } from './processes.ts';
import { rssMiB } from './proc-stats.ts';
import { RUNTIME_FLAGS } from './runtime-flags.ts';
import { Journal } from './journal.ts';
import { CLIENT_KEY, UPSTREAM_KEY_ENV, writePolicy, type BenchPolicy } from './policy.ts';

export const VARIANTS = ['pipe-http', 'pipe-undici', 'proxy', 'proxy+audit', 'proxy+full', 'proxy+default', 'proxy+policy', 'proxy+limit'] as const;
export type Variant = (typeof VARIANTS)[number];
/** A proxy variant of the --before tree, measured alongside the same variant of this tree. */
export type BeforeName = `${Variant}@before`;
export type EndpointName = 'direct' | Variant | BeforeName;
export const PROXY_VARIANTS: readonly Variant[] = ['proxy', 'proxy+audit', 'proxy+full', 'proxy+default', 'proxy+policy', 'proxy+limit'];
/** The variants that run with POLICY_FILE: they are measured against proxy+default, the same proxy without it. */
export const POLICY_VARIANTS: readonly Variant[] = ['proxy+policy', 'proxy+limit'];
/** What --before measures of another tree: not the policy variants, which a tree older than POLICY_FILE would run without a policy. */
export const BEFORE_VARIANTS: readonly Variant[] = PROXY_VARIANTS.filter((variant) => !POLICY_VARIANTS.includes(variant));
/** The variants that write an audit journal. */
const AUDITING: readonly Variant[] = ['proxy+audit', 'proxy+full', 'proxy+default', 'proxy+policy', 'proxy+limit'];

export function beforeName(variant: Variant): BeforeName {
  return `${variant}@before`;
}

/** The variant an endpoint runs, whichever tree it comes from. */
export function variantOf(name: Exclude<EndpointName, 'direct'>): Variant {
  return name.endsWith('@before') ? (name.slice(0, -'@before'.length) as Variant) : (name as Variant);
}

export interface Endpoint {
  name: EndpointName;
  baseUrl: string;
  /** The server process whose RSS is sampled during transfers (the upstream itself for `direct`). */
  pid: number;
  child: ChildProcess;
  /** Where the server's stderr goes; quoted when it dies. */
  logPath: string;
  journal: Journal | null;
  /** VmRSS once the server answered its readiness check, before any traffic. */
  readyRssMiB: number;
  /** The OpenAI key its clients send: the run's virtual key for the policy variants, else CLIENT_KEY. */
  apiKey: string;
  /** The proxy's admin port (null for the pipes, the upstream and self-test stand-ins). */
  adminUrl: string | null;
  /** The policy file it runs with (null without one, and for self-test stand-ins). */
  policy: BenchPolicy | null;
}

export interface StartContext {
  workDir: string;
  upstreamUrl: string;
  sinkUrl: string;
  selfTest: boolean;
  /** One AUDIT_DIR per auditing variant for the whole run, so restarts keep appending to it. */
  journals: ReadonlyMap<EndpointName, Journal>;
  /** The --before tree, for the `…@before` endpoints. */
  before: BeforeTree | null;
}

function slug(name: string): string {
  return name.replace(/[^a-z0-9]+/g, '-');
}

/** Starts one of the bench's own servers (upstream, sink, pipes) with `nodeFlags`: env PORT (+ UPSTREAM_URL), ready when it accepts TCP. */
export async function startBenchServer(
  name: string,
  file: string,
  workDir: string,
  env: NodeJS.ProcessEnv = {},
  nodeFlags: readonly string[] = [],
): Promise<{ child: ChildProcess; port: number; logPath: string }> {
  const port = await freePort();
  const logPath = join(workDir, `${slug(name)}.stderr.log`);
  const child = spawnNode(file, { ...process.env, ...env, PORT: String(port) }, logPath, nodeFlags);
  await waitReady(name, child, () => tcpOpen(port), logPath);
  return { child, port, logPath };
}

/** Creates the audit directories of the auditing variants (none in self-test: stand-ins write nothing). */
export function createJournals(names: readonly Exclude<EndpointName, 'direct'>[], workDir: string, selfTest: boolean): Map<EndpointName, Journal> {
  const journals = new Map<EndpointName, Journal>();
  if (selfTest) return journals;
  for (const name of names.filter((n) => AUDITING.includes(variantOf(n)))) {
    const dir = join(workDir, `audit-${slug(name)}`);
    mkdirSync(dir);
    journals.set(name, new Journal(dir));
  }
  return journals;
}

function proxyEnv(variant: Variant, ctx: StartContext, auditDir: string, policy: BenchPolicy | null): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !CALLER_SETTINGS.test(key)));
  const core = { HOST: '127.0.0.1', UPSTREAM_URL: ctx.upstreamUrl };
  // What `npm start` runs with no settings: journal and metrics on, no tracing.
  const defaultStart = { AUDIT_ENABLED: 'true', AUDIT_DIR: auditDir, METRICS_ENABLED: 'true', OTEL_SDK_DISABLED: 'true' };
  switch (variant) {
    case 'proxy':
      return { ...env, ...core, AUDIT_ENABLED: 'false', METRICS_ENABLED: 'false', OTEL_SDK_DISABLED: 'true' };
    case 'proxy+audit':
      return { ...env, ...core, AUDIT_ENABLED: 'true', AUDIT_DIR: auditDir, METRICS_ENABLED: 'false', OTEL_SDK_DISABLED: 'true' };
    // What `npm start` runs with no settings (config.ts's defaults): journal and metrics on, no
    // tracing endpoint. The policy variants add only the policy file and its upstream key.
    case 'proxy+default':
      return { ...env, ...core, ...defaultStart };
    case 'proxy+policy':
    case 'proxy+limit':
      if (policy === null) throw new Error(`${variant} needs its policy file`);
      return { ...env, ...core, ...defaultStart, POLICY_FILE: policy.path, [UPSTREAM_KEY_ENV]: CLIENT_KEY };
    default:
      return {
        ...env,
        ...core,
        AUDIT_ENABLED: 'true',
        AUDIT_DIR: auditDir,
        METRICS_ENABLED: 'true',
        OTEL_EXPORTER_OTLP_ENDPOINT: ctx.sinkUrl,
        OTEL_TRACES_SAMPLER: 'always_on',
        OTEL_BSP_SCHEDULE_DELAY: '200',
      };
  }
}

export async function startVariant(name: Exclude<EndpointName, 'direct'>, ctx: StartContext): Promise<Endpoint> {
  const variant = variantOf(name);
  const isProxy = PROXY_VARIANTS.includes(variant);
  if (!isProxy || ctx.selfTest) {
    const file = variant === 'pipe-http' ? 'bench/pipe-http.ts' : 'bench/pipe-undici.ts';
    const { child, port, logPath } = await startBenchServer(name, file, ctx.workDir, { UPSTREAM_URL: ctx.upstreamUrl }, RUNTIME_FLAGS);
    const pid = child.pid ?? 0;
    return { name, baseUrl: `http://127.0.0.1:${port}`, pid, child, logPath, journal: null, readyRssMiB: rssMiB(pid), apiKey: CLIENT_KEY, adminUrl: null, policy: null };
  }
  const [port, adminPort] = [await freePort(), await freePort()];
  const journal = ctx.journals.get(name) ?? null;
  const logPath = join(ctx.workDir, `${slug(name)}.stderr.log`);
  // A new virtual key each start: the file is rewritten while its proxy is stopped.
  const policy = POLICY_VARIANTS.includes(variant) ? writePolicy(ctx.workDir, slug(name), variant === 'proxy+limit') : null;
  const env = { ...proxyEnv(variant, ctx, journal?.dir ?? '', policy), PORT: String(port), ADMIN_PORT: String(adminPort) };
  const before = name === variant ? null : ctx.before;
  if (name !== variant && before === null) throw new Error(`${name} needs --before`);
  // Each tree's proxy runs as its own package.json `start` says, from its own checkout.
  const child = before === null ? spawnNode(PROXY_ENTRY, env, logPath, RUNTIME_FLAGS) : spawnNodeArgs(before.nodeArgs, env, logPath, before.dir);
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  await waitReady(name, child, () => httpOk(`${adminUrl}/readyz`), logPath);
  const pid = child.pid ?? 0;
  const apiKey = policy?.virtualKey ?? CLIENT_KEY;
  return { name, baseUrl: `http://127.0.0.1:${port}`, pid, child, logPath, journal, readyRssMiB: rssMiB(pid), apiKey, adminUrl, policy };
}
