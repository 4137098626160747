// Probes (`npm run probes -- --help`): each finding of issue 13 replayed as an attack on a fresh
// proxy (started as `npm start` runs it, audit on, against the test upstream emulator on
// loopback), each bounded to seconds. Prints a pass/fail table with the figure measured and the
// proxy's peak RSS, writes it to bench/PROBES.md, exits 1 if any probe fails.
// The proxy gets short client limits (PROBE_ENV) so the timeouts show within seconds; --set and
// --unset change them (or their names). `npm run probes` raises the fd limit (ulimit -n).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { startUpstream, type Upstream } from '../test/support/upstream.ts';
import { parseEnvEdits } from './lib/env-options.ts';
import { log } from './lib/log.ts';
import { ROOT } from './lib/paths.ts';
import { watchPeakRss, type PeakWatch } from './lib/proc-stats.ts';
import { killAllNow, stop, stopAll } from './lib/processes.ts';
import { compileProxy, startProxyChild, type ProxyChild } from './lib/proxy-child.ts';
import { absoluteForm, dotSegments, secrets } from './probes/accounting.ts';
import { fdLimit, silent, slowloris, slowUploads } from './probes/connections.ts';
import type { Limits, Probe, ProbeContext, ProbeResult } from './probes/context.ts';
import { burst1MiB, controlBytes, injectBuffers, wsMessages } from './probes/memory.ts';
import { auditDirRemoved, errorShapes } from './probes/shapes.ts';

const PROBES: Probe[] = [slowloris, silent, slowUploads, fdLimit, wsMessages, injectBuffers, burst1MiB, controlBytes, absoluteForm, dotSegments, secrets, errorShapes, auditDirRemoved];

/** The client limits every probe's proxy gets, under the names issue 13 gives them. */
const PROBE_ENV: Record<string, string> = {
  CLIENT_HEADERS_TIMEOUT_MS: '3000',
  CLIENT_IDLE_TIMEOUT_MS: '3000',
  CLIENT_BODY_TIMEOUT_MS: '3000',
};
const RSS_LIMIT_MIB = 400;
const PROBE_TIMEOUT_MS = 120_000;

const USAGE = `usage: npm run probes -- [--only a,b] [--slack-ms N] [--out FILE] [--set NAME=VALUE] [--unset NAME]
  probes: ${PROBES.map((p) => p.name).join(', ')}
  the proxy gets ${Object.entries(PROBE_ENV).map(([k, v]) => `${k}=${v}`).join(' ')} unless changed with --set/--unset;
  the probes' deadlines follow those three values (a name unset counts as 30000 ms)
  --slack-ms     added to every timeout before a connection still open fails the probe (default 5000)`;

interface Settings {
  only: Probe[];
  slackMs: number;
  out: string;
  /** --set/--unset from the command line. */
  edits: Record<string, string | undefined>;
  /** PROBE_ENV with the edits: what the limits are read from. */
  env: Record<string, string | undefined>;
}

function parse(argv: readonly string[]): Settings {
  const { edits, rest } = parseEnvEdits(argv);
  let only = PROBES;
  let slackMs = 5000;
  let out = 'bench/PROBES.md';
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    const value = (): string => {
      const next = rest[++i];
      if (next === undefined) throw new Error(`${arg ?? ''} needs a value\n${USAGE}`);
      return next;
    };
    if (arg === '--only') {
      const names = value().split(',').map((n) => n.trim());
      const unknown = names.filter((n) => !PROBES.some((p) => p.name === n));
      if (unknown.length > 0) throw new Error(`unknown probe(s) ${unknown.join(', ')}\n${USAGE}`);
      only = PROBES.filter((p) => names.includes(p.name));
    } else if (arg === '--slack-ms') slackMs = Number(value());
    else if (arg === '--out') out = value();
    else throw new Error(`unknown option ${arg ?? ''}\n${USAGE}`);
  }
  if (!Number.isInteger(slackMs) || slackMs < 0) throw new Error(`--slack-ms must be a whole number\n${USAGE}`);
  return { only, slackMs, out, edits, env: { ...PROBE_ENV, ...edits } };
}

function limits(env: Record<string, string | undefined>, slackMs: number): Limits {
  const ms = (name: string): number => {
    const value = Number(env[name] ?? 30_000);
    return Number.isFinite(value) ? value : 30_000;
  };
  return { headersMs: ms('CLIENT_HEADERS_TIMEOUT_MS'), idleMs: ms('CLIENT_IDLE_TIMEOUT_MS'), bodyMs: ms('CLIENT_BODY_TIMEOUT_MS'), slackMs };
}

interface Row {
  probe: Probe;
  result: ProbeResult;
  peakMiB: number | null;
  seconds: number;
}

let workDir: string | null = null;
process.once('exit', () => {
  killAllNow();
  if (workDir !== null) rmSync(workDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void stopAll().finally(() => process.exit(130)));
}

async function runProbe(probe: Probe, settings: Settings, dir: string): Promise<Row> {
  const proxies: ProxyChild[] = [];
  const upstreams: Upstream[] = [];
  const watches: PeakWatch[] = [];
  const t0 = performance.now();
  const ctx: ProbeContext = {
    limits: limits(settings.env, settings.slackMs),
    note: (message) => log(`${probe.name}: ${message}`),
    startUpstream: async () => {
      const upstream = await startUpstream();
      upstreams.push(upstream);
      return upstream;
    },
    startProxy: async (options = {}) => {
      const proxy = await startProxyChild({
        name: `${probe.name}-${proxies.length + 1}`,
        workDir: dir,
        upstreamUrl: options.upstreamUrl ?? 'http://127.0.0.1:9',
        // The command line has the last word, over a probe's own settings too.
        env: { ...PROBE_ENV, ...options.env, ...settings.edits },
        fdLimit: options.fdLimit,
      });
      proxies.push(proxy);
      watches.push(watchPeakRss(proxy.pid));
      return proxy;
    },
  };
  let result: ProbeResult;
  let timer: NodeJS.Timeout | undefined;
  try {
    result = await Promise.race([
      probe.run(ctx),
      new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`did not finish within ${PROBE_TIMEOUT_MS / 1000} s`)), PROBE_TIMEOUT_MS); }),
    ]);
  } catch (error) {
    result = { pass: false, figure: `probe error: ${error instanceof Error ? error.message : String(error)}` };
  } finally {
    clearTimeout(timer);
  }
  const peaks = watches.map((watch) => watch.stop().peakMiB);
  for (const proxy of proxies) {
    if (proxy.child.exitCode !== null && proxy.child.signalCode === null && proxy.child.exitCode !== 0) {
      result.details = [...(result.details ?? []), `proxy ${proxy.name} exited with code ${proxy.child.exitCode}`];
    }
    await stop(proxy.child);
  }
  await Promise.all(upstreams.map((upstream) => upstream.close()));
  const peakMiB = peaks.length === 0 ? null : Math.max(...peaks);
  if (peakMiB !== null && peakMiB >= RSS_LIMIT_MIB && result.pass) {
    result = { ...result, pass: false, figure: `${result.figure}; peak RSS ${peakMiB.toFixed(0)} MiB ≥ ${RSS_LIMIT_MIB}` };
  }
  return { probe, result, peakMiB, seconds: (performance.now() - t0) / 1000 };
}

function report(rows: readonly Row[], settings: Settings): string {
  const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  const lines = [
    '# Probes: the findings of issue 13 as attacks',
    '',
    `${new Date().toISOString()} · \`npm run probes${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\` · node ${process.version} · ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    '',
    `Proxy env for every probe: ${Object.entries(settings.env).map(([k, v]) => `${k}=${v ?? '(unset)'}`).join(', ')}; timeouts judged with ${settings.slackMs} ms of slack; every probe must also keep the proxy's RSS under ${RSS_LIMIT_MIB} MiB.`,
    '',
    '| probe | finding | result | figure | peak RSS MiB | s |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.probe.name} | ${r.probe.finding} | ${r.result.pass ? 'PASS' : '**FAIL**'} | ${cell(r.result.figure)} | ${r.peakMiB === null ? '–' : r.peakMiB.toFixed(0)} | ${r.seconds.toFixed(1)} |`),
    '',
    `**${rows.filter((r) => r.result.pass).length} of ${rows.length} passed**`,
    '',
    '## What each probe demands',
    '',
    ...rows.flatMap((r) => [`- **${r.probe.name}** (finding ${r.probe.finding}): ${r.probe.goal}`, ...(r.result.details ?? []).map((d) => `  - ${d}`)]),
    '',
  ];
  return lines.join('\n');
}

async function main(): Promise<boolean> {
  if (process.argv.includes('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return true;
  }
  const settings = parse(process.argv.slice(2));
  compileProxy();
  const dir = (workDir = mkdtempSync(join(os.tmpdir(), 'proxy-probes-')));
  const rows: Row[] = [];
  for (const probe of settings.only) {
    log(`${probe.name}: ${probe.goal}`);
    const row = await runProbe(probe, settings, dir);
    log(`${probe.name}: ${row.result.pass ? 'PASS' : 'FAIL'}: ${row.result.figure}`);
    rows.push(row);
  }
  const markdown = report(rows, settings);
  process.stdout.write(markdown);
  writeFileSync(resolve(ROOT, settings.out), markdown);
  log(`wrote ${settings.out}`);
  return rows.every((r) => r.result.pass);
}

try {
  process.exitCode = (await main()) ? 0 : 1;
} catch (error) {
  process.stderr.write(`\nprobes failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
} finally {
  await stopAll();
}
