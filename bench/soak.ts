// Soak (`npm run soak -- --help`): the proxy compiled and started as `npm start` runs it, audit on, against the
// test upstream emulator, under mixed traffic for SOAK_SECONDS (default 600; --quick: 60) on
// loopback, with a slowloris wave in the middle. Every 10 s it samples the proxy's RSS, open fds,
// event-loop delay p99 (prom-client's nodejs_eventloop_lag_p99_seconds, reset at each scrape, so
// per window) and records written vs exchanges answered. After a drain it checks every answered
// exchange has its record (by x-proxy-request-id = record _id), that memory did not drift and
// that fds came back to baseline; prints a markdown table and a verdict, writes bench/SOAK.md,
// and exits 1 on any failure.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { startUpstream } from '../test/support/upstream.ts';
import { percentile } from './lib/client.ts';
import { parseEnvEdits } from './lib/env-options.ts';
import { journalIds } from './lib/journal-records.ts';
import { log, sleep } from './lib/log.ts';
import { ROOT } from './lib/paths.ts';
import { fdCount, rssMiB } from './lib/proc-stats.ts';
import { killAllNow, stop, stopAll } from './lib/processes.ts';
import { compileProxy, startProxyChild, type ProxyChild } from './lib/proxy-child.ts';
import { metricValue, scrapeMetrics } from './lib/scrape.ts';
import { SOAK_MIX, SoakTraffic, UPLOAD_BYTES } from './lib/soak-traffic.ts';
import { median } from './lib/stats.ts';
import { Trickle } from './lib/trickle.ts';

const USAGE = `usage: npm run soak -- [--quick] [--seconds N] [--slowloris N] [--headers-timeout-s N] [--out FILE] [--set NAME=VALUE] [--unset NAME]
  --quick        60 s instead of SOAK_SECONDS (default 600)
  --slowloris N  connections of the slowloris wave (default 300; a header byte every 5 s each)
  --headers-timeout-s N  the longest request-head timeout the proxy may have (default 60): a wave
                 lasting twice that fails the soak unless the proxy closed some of its connections
  --set/--unset  environment of the proxy (e.g. --set CLIENT_HEADERS_TIMEOUT_MS=10000)`;

const SAMPLE_MS = 10_000;
// Drift: the median RSS of the last third of the run (after warm-up) above the first third's by
// more than both of these. Both, so that neither a small heap's noise nor a large one's trips it.
const RSS_DRIFT_PERCENT = 15;
const RSS_DRIFT_MIB = 32;
// fds after the drain may exceed the pre-traffic baseline by this much (a journal segment rotated
// in, a kept-alive upstream connection not yet closed by the emulator).
const FD_SLACK = 5;
const SLOWLORIS_GAP_MS = 5000;

interface Settings {
  seconds: number;
  slowloris: number;
  headersTimeoutS: number;
  out: string;
  env: Record<string, string | undefined>;
}

function parse(argv: readonly string[]): Settings {
  const { edits, rest } = parseEnvEdits(argv);
  const fromEnv = process.env['SOAK_SECONDS'];
  let seconds = fromEnv === undefined || fromEnv === '' ? 600 : Number(fromEnv);
  let slowloris = 300;
  let headersTimeoutS = 60;
  let out = 'bench/SOAK.md';
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    const value = (): string => {
      const next = rest[++i];
      if (next === undefined) throw new Error(`${arg ?? ''} needs a value\n${USAGE}`);
      return next;
    };
    if (arg === '--quick') seconds = 60;
    else if (arg === '--seconds') seconds = Number(value());
    else if (arg === '--slowloris') slowloris = Number(value());
    else if (arg === '--headers-timeout-s') headersTimeoutS = Number(value());
    else if (arg === '--out') out = value();
    else throw new Error(`unknown option ${arg ?? ''}\n${USAGE}`);
  }
  if (!Number.isInteger(seconds) || seconds < 60) throw new Error(`the soak needs at least 60 s, got ${seconds}\n${USAGE}`);
  if (!Number.isInteger(slowloris) || slowloris < 0) throw new Error(`--slowloris must be a whole number\n${USAGE}`);
  if (!(headersTimeoutS > 0)) throw new Error(`--headers-timeout-s must be positive\n${USAGE}`);
  return { seconds, slowloris, headersTimeoutS, out, env: edits };
}

interface Row {
  label: string;
  t: number;
  rss: number;
  fds: number;
  loopP99Ms: number | null;
  jsonP99Ms: number | null;
  requests: number;
  records: number;
  slowloris: number;
  slowlorisClosed: number;
  errors: number;
}

const fmt = (n: number | null, digits = 0): string => (n === null || Number.isNaN(n) ? '–' : n.toFixed(digits));

function table(rows: readonly Row[]): string {
  const head = '| t (s) | RSS MiB | fds | loop delay p99 ms | JSON p99 ms | requests | records | slowloris open | slowloris closed by proxy | client errors |\n|---|---|---|---|---|---|---|---|---|---|\n';
  return head + rows.map((r) =>
    `| ${r.label} | ${fmt(r.rss)} | ${r.fds} | ${fmt(r.loopP99Ms, 1)} | ${fmt(r.jsonP99Ms, 1)} | ${r.requests} | ${r.records} | ${r.slowloris} | ${r.slowlorisClosed} | ${r.errors} |`).join('\n') + '\n';
}

interface Verdict {
  pass: boolean;
  lines: string[];
}

interface Wave {
  seconds: number;
  opened: number;
  closedByProxy: number;
}

function judge(rows: readonly Row[], settings: Settings, baselineFds: number, finalFds: number, missing: string[], traffic: SoakTraffic, wave: Wave): Verdict {
  const lines: string[] = [];
  let pass = true;
  const check = (ok: boolean, text: string): void => {
    pass &&= ok;
    lines.push(`- ${ok ? 'PASS' : 'FAIL'}: ${text}`);
  };
  const warmup = Math.max(20, settings.seconds * 0.1);
  const steady = rows.filter((r) => r.label !== 'drain' && r.label !== 'end' && r.t >= warmup);
  const third = Math.floor(steady.length / 3);
  if (third >= 1) {
    const first = median(steady.slice(0, third).map((r) => r.rss));
    const last = median(steady.slice(-third).map((r) => r.rss));
    const limit = Math.max(first * (RSS_DRIFT_PERCENT / 100), RSS_DRIFT_MIB);
    check(last - first <= limit, `memory drift: RSS median ${fmt(first)} MiB in the first third after ${fmt(warmup)} s warm-up, ${fmt(last)} MiB in the last (limit +${fmt(limit)} MiB: ${RSS_DRIFT_PERCENT}% or ${RSS_DRIFT_MIB} MiB, whichever is larger); peak ${fmt(Math.max(...rows.map((r) => r.rss)))} MiB`);
  } else {
    check(false, `memory drift: only ${steady.length} samples after warm-up, too few to judge`);
  }
  check(finalFds <= baselineFds + FD_SLACK, `fds back to baseline after the slowloris wave and the drain: ${finalFds} (baseline ${baselineFds}, slack ${FD_SLACK}); peak ${Math.max(...rows.map((r) => r.fds))}`);
  if (settings.slowloris > 0 && wave.seconds >= 2 * settings.headersTimeoutS) {
    check(wave.closedByProxy > 0, `slowloris: the proxy closed ${wave.closedByProxy} of ${wave.opened} slowloris connections in a ${fmt(wave.seconds)} s wave (at least one expected with a request-head timeout of ${settings.headersTimeoutS} s or less)`);
  } else {
    lines.push(`- slowloris: the proxy closed ${wave.closedByProxy} of ${wave.opened} connections in a ${fmt(wave.seconds)} s wave (not judged: shorter than twice --headers-timeout-s ${settings.headersTimeoutS})`);
  }
  const answered = traffic.tally.ids.size;
  check(missing.length === 0, `records: ${answered - missing.length} of ${answered} answered exchanges have their record${missing.length > 0 ? `; missing e.g. ${missing.slice(0, 3).join(', ')}` : ''}`);
  const problems = [...traffic.tally.problems].map(([what, n]) => `${what} ×${n}`);
  check(problems.length === 0, `client errors: ${traffic.tally.errors}${problems.length > 0 ? ` (${problems.slice(0, 8).join('; ')})` : ''}`);
  const loop = rows.map((r) => r.loopP99Ms).filter((v) => v !== null);
  lines.push(`- event-loop delay p99 per window: max ${fmt(loop.length > 0 ? Math.max(...loop) : null, 1)} ms, median ${fmt(loop.length > 0 ? median(loop) : null, 1)} ms (reported, not judged)`);
  return { pass, lines };
}

let workDir: string | null = null;
process.once('exit', () => {
  killAllNow();
  if (workDir !== null) rmSync(workDir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => void stopAll().finally(() => process.exit(130)));
}

async function main(): Promise<boolean> {
  if (process.argv.includes('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return true;
  }
  const settings = parse(process.argv.slice(2));
  compileProxy();
  const dir = (workDir = mkdtempSync(join(os.tmpdir(), 'proxy-soak-')));
  const upstream = await startUpstream();
  // The emulator keeps every request it saw (bodies too) for tests; a soak must not grow it.
  const forget = setInterval(() => {
    upstream.requests.length = 0;
    upstream.wsSessions.length = 0;
  }, 1000);
  let proxy: ProxyChild | null = null;
  try {
    proxy = await startProxyChild({ name: 'soak', workDir: dir, upstreamUrl: upstream.url, env: settings.env });
    const p = proxy;
    log(`proxy pid ${p.pid} on ${p.url}, audit in ${p.auditDir}; ${settings.seconds} s of traffic`);
    await scrapeMetrics(p.adminUrl); // resets the event-loop histogram: the first window starts now
    const baselineFds = fdCount(p.pid);
    const traffic = new SoakTraffic(p.url);
    const slowloris = new Trickle({
      port: p.port,
      count: settings.slowloris,
      prefix: 'GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-soak-slowloris\r\n',
      drip: 'X-Slow: 1\r\n',
      gapMs: SLOWLORIS_GAP_MS,
      reopen: true,
    });
    const rows: Row[] = [];
    const t0 = performance.now();
    let lastScrape = performance.now();
    const sample = async (label?: string): Promise<Row> => {
      const metrics = await scrapeMetrics(p.adminUrl);
      // The histogram covers the time since the previous scrape: too short a window says nothing.
      const windowed = performance.now() - lastScrape >= 2000;
      lastScrape = performance.now();
      const loop = metrics === null || !windowed ? null : metricValue(metrics, 'nodejs_eventloop_lag_p99_seconds');
      const json = traffic.tally.takeJsonLatencies();
      const t = (performance.now() - t0) / 1000;
      const row: Row = {
        label: label ?? t.toFixed(0),
        t,
        rss: rssMiB(p.pid),
        fds: fdCount(p.pid),
        loopP99Ms: loop === null ? null : loop * 1000,
        jsonP99Ms: json.length === 0 ? null : percentile(json, 99),
        requests: traffic.tally.ids.size,
        records: (await p.journal.size()).records,
        slowloris: slowloris.open,
        slowlorisClosed: slowloris.closedByPeer.length,
        errors: traffic.tally.errors,
      };
      rows.push(row);
      log(`t=${row.label} rss=${fmt(row.rss)} MiB fds=${row.fds} loop p99=${fmt(row.loopP99Ms, 1)} ms json p99=${fmt(row.jsonP99Ms, 1)} ms requests=${row.requests} records=${row.records} slowloris=${row.slowloris} errors=${row.errors}`);
      return row;
    };

    traffic.start();
    const waveStart = settings.seconds * 0.1 * 1000;
    const waveEnd = settings.seconds * (2 / 3) * 1000;
    const wave = (async () => {
      await sleep(waveStart);
      log(`slowloris wave: ${settings.slowloris} connections, a header byte every ${SLOWLORIS_GAP_MS / 1000} s each`);
      await slowloris.start();
      await sleep(Math.max(0, waveEnd - (performance.now() - t0)));
      slowloris.close();
      log(`slowloris wave over: opened ${slowloris.opened}, ${slowloris.closedByPeer.length} closed by the proxy`);
    })();
    for (let next = SAMPLE_MS; next <= settings.seconds * 1000; next += SAMPLE_MS) {
      await sleep(Math.max(0, next - (performance.now() - t0)));
      await sample();
    }
    await wave;
    log('stopping traffic; waiting for the exchanges in flight and the journal');
    await traffic.stop();
    await p.journal.settle(2000, 30_000);
    await sample('drain');
    // Kept-alive upstream connections close when the emulator's keep-alive timeout (5 s) passes.
    const fdDeadline = performance.now() + 20_000;
    while (fdCount(p.pid) > baselineFds + FD_SLACK && performance.now() < fdDeadline) await sleep(500);
    const end = await sample('end');

    const written = await journalIds(p.auditDir);
    const missing = [...traffic.tally.ids].filter((id) => !written.has(id));
    const waveFacts = { seconds: (waveEnd - waveStart) / 1000, opened: slowloris.opened, closedByProxy: slowloris.closedByPeer.length };
    const verdict = judge(rows, settings, baselineFds, end.fds, missing, traffic, waveFacts);
    const kinds = [...traffic.tally.byKind].map(([kind, n]) => `${kind} ${n}`).join(', ');
    const skipped = [...traffic.tally.skipped].map(([kind, n]) => `${kind} ${n}`).join(', ') || 'none';
    const mix = Object.entries(SOAK_MIX).map(([kind, s]) => `${kind} every ${s.everyMs} ms (≤ ${s.maxInFlight} in flight)`).join(', ');
    const markdown = [
      `# Soak: ${settings.seconds} s of mixed traffic`,
      '',
      `${new Date().toISOString()} · \`npm run soak${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\` · node ${process.version} · ${os.cpus().length} CPUs, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
      '',
      `Traffic: ${mix}; uploads ${UPLOAD_BYTES / 1024 / 1024} MiB multipart; faults rotate upstream reset before the head, 500, 503, a 2.5 s head, a reset mid-body; `
        + `slowloris ${settings.slowloris} connections (reopened when closed) from ${fmt(waveStart / 1000)} s to ${fmt(waveEnd / 1000)} s: opened ${slowloris.opened}, closed by the proxy ${slowloris.closedByPeer.length}.`,
      `Exchanges by kind: ${kinds}; ticks skipped (kind at its in-flight cap): ${skipped}. Proxy env edits: ${JSON.stringify(settings.env)}.`,
      '',
      table(rows),
      `**${verdict.pass ? 'PASS' : 'FAIL'}**`,
      '',
      ...verdict.lines,
      '',
    ].join('\n');
    process.stdout.write(markdown);
    writeFileSync(resolve(ROOT, settings.out), markdown);
    log(`wrote ${settings.out}`);
    return verdict.pass;
  } finally {
    clearInterval(forget);
    if (proxy !== null) await stop(proxy.child);
    await upstream.close();
  }
}

try {
  process.exitCode = (await main()) ? 0 : 1;
} catch (error) {
  process.stderr.write(`\nsoak failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
} finally {
  await stopAll();
}
