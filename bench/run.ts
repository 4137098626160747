// Benchmark driver (`npm run bench -- --help`): starts the upstream emulator, OTLP sink, baselines and
// proxy variants as children, verifies them, then measures every scenario over interleaved rounds.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { checkoutBeforeTree, removeBeforeTree, type BeforeTree } from './lib/before-tree.ts';
import { renderComparison } from './lib/compare.ts';
import { BEFORE_VARIANTS, beforeName, createJournals, startBenchServer, PROXY_VARIANTS, type Endpoint, type EndpointName } from './lib/endpoints.ts';
import { prepare, startFleet, stopFleet } from './lib/fleet.ts';
import { judge } from './lib/goals.ts';
import type { JournalSize } from './lib/journal.ts';
import { log } from './lib/log.ts';
import { parseOptions, USAGE, type Settings } from './lib/options.ts';
import { CHAT_REQUEST } from './lib/payloads.ts';
import { CLIENT_KEY } from './lib/policy.ts';
import { ROOT, WRK_BIN, WRK_SCRIPT } from './lib/paths.ts';
import { killAllNow, stopAll } from './lib/processes.ts';
import { renderReport } from './lib/report.ts';
import { Samples } from './lib/stats.ts';
import { wrkFlags } from './lib/wrk.ts';
import { latencyRun } from './scenarios/latency.ts';
import { runRound } from './scenarios/round.ts';
import { throughputRun } from './scenarios/throughput.ts';

let workDir: string | null = null;
let interrupted = false;

// Children must not outlive the harness, whatever ends it.
process.once('exit', () => {
  killAllNow();
  if (workDir !== null) rmSync(workDir, { recursive: true, force: true });
  removeBeforeTree();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping all children`);
    void stopAll().finally(() => process.exit(130));
  });
}

/**
 * This tree's endpoints and, with --before, the other tree's proxy variants next to theirs: before
 * then after in odd rounds, after then before in even ones, so neither always follows the other.
 */
function measuredNames(settings: Settings, round: number): Exclude<EndpointName, 'direct'>[] {
  if (settings.before === null) return settings.variants;
  return settings.variants.flatMap((variant) => {
    if (!BEFORE_VARIANTS.includes(variant)) return [variant];
    return round % 2 === 1 ? [beforeName(variant), variant] : [variant, beforeName(variant)];
  });
}

function preflight(settings: Settings): void {
  if (!existsSync(WRK_BIN)) throw new Error(`${WRK_BIN} not found (apt-get install wrk)`);
  const lua = readFileSync(join(ROOT, WRK_SCRIPT), 'utf8');
  if (!lua.includes(`'${JSON.stringify(CHAT_REQUEST)}'`)) throw new Error(`${WRK_SCRIPT} body differs from CHAT_REQUEST in bench/lib/payloads.ts`);
  const needsProxy = settings.variants.some((variant) => PROXY_VARIANTS.includes(variant));
  if (needsProxy && !settings.selfTest) {
    // The proxy is measured as `npm start` runs it: compiled, from this tree's sources.
    log('compiling src/ to dist/ (npm run build)');
    execFileSync(join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  }
}

async function sinkStats(url: string): Promise<{ requests: number; bytes: number } | null> {
  const body: unknown = await (await fetch(`${url}/stats`)).json();
  if (typeof body !== 'object' || body === null || !('requests' in body) || !('bytes' in body)) return null;
  return { requests: Number(body.requests), bytes: Number(body.bytes) };
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadStart = os.loadavg();
  if (process.argv.includes('--help')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const settings = parseOptions(process.argv.slice(2));
  // A ref that names no commit fails here, before anything is compiled.
  const before: BeforeTree | null = settings.before === null ? null : checkoutBeforeTree(settings.before);
  preflight(settings);
  const names = measuredNames(settings, 1);
  const dir = (workDir = mkdtempSync(join(os.tmpdir(), 'proxy-bench-')));

  log('starting upstream emulator and OTLP sink');
  const [upstream, sink] = await Promise.all([
    startBenchServer('upstream', 'bench/upstream.ts', dir),
    startBenchServer('otlp-sink', 'bench/otlp-sink.ts', dir),
  ]);
  const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
  const sinkUrl = `http://127.0.0.1:${sink.port}`;
  const journals = createJournals(names, dir, settings.selfTest);
  const context = { workDir: dir, upstreamUrl, sinkUrl, selfTest: settings.selfTest, journals, before };
  const direct: Endpoint = { name: 'direct', baseUrl: upstreamUrl, pid: upstream.child.pid ?? 0, child: upstream.child, logPath: upstream.logPath, journal: null, readyRssMiB: Number.NaN, apiKey: CLIENT_KEY, adminUrl: null, policy: null };

  const samples = new Samples();
  const notes: string[] = [];
  for (let round = 1; round <= settings.rounds; round++) {
    const roundNames = measuredNames(settings, round);
    log(`round ${round}/${settings.rounds}: starting ${roundNames.join(', ')}${settings.selfTest ? ' (self-test: proxy variants are pipe-undici stand-ins)' : ''}`);
    const variants = await startFleet(roundNames, context);
    for (const endpoint of variants) samples.add('rssReady', endpoint.name, endpoint.readyRssMiB);
    const endpoints = [direct, ...variants];
    await prepare(endpoints, settings.warmupS);
    // Rotating the order keeps a slow drift of the machine from always favouring the same column.
    const order = endpoints.map((_, i) => endpoints[(i + round - 1) % endpoints.length]).filter((e) => e !== undefined);
    await runRound({ round, order, settings, samples, notes });
    await stopFleet(variants);
  }

  const audit = journals.get('proxy+audit') ?? null;
  let journal: JournalSize | null = null;
  if (audit !== null) {
    await audit.settle(1000);
    journal = await audit.size();
    if (journal.records === 0) notes.push('proxy+audit wrote no records to AUDIT_DIR/*.ndjson: auditing was not active.');
  }
  const fullRan = settings.variants.includes('proxy+full') && !settings.selfTest;
  const sinkCounts = fullRan ? await sinkStats(sinkUrl) : null;
  if (fullRan && sinkCounts?.requests === 0) notes.push('proxy+full exported no spans to the OTLP sink: tracing was not active.');

  const columns: EndpointName[] = ['direct', ...names];
  const markdown = renderReport({
    settings,
    date: new Date(),
    command: `npm run bench${settings.argv.length > 0 ? ` -- ${settings.argv.join(' ')}` : ''}`,
    columns,
    samples,
    verdicts: judge(samples, settings.variants),
    journal,
    sink: sinkCounts,
    notes,
    loadStart,
    wrk: { latency: wrkFlags(latencyRun(settings.latencyS)), throughput: wrkFlags(throughputRun(settings.throughputS)) },
    runSeconds: (performance.now() - started) / 1000,
    comparison: before === null ? '' : renderComparison(samples, settings.variants, before, settings.rounds),
  });
  process.stdout.write(markdown);
  writeFileSync(resolve(ROOT, settings.out), markdown);
  log(`wrote ${settings.out}`);
}

try {
  await main();
} catch (error) {
  if (!interrupted) process.stderr.write(`\nbench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
} finally {
  await stopAll();
  removeBeforeTree();
}
