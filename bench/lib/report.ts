// Renders the run as markdown: settings, one column per endpoint and one row per metric (medians),
// the target verdicts, the audit journal figures, per-round values and notes.
import os from 'node:os';
import type { EndpointName } from './endpoints.ts';
import type { Verdict } from './goals.ts';
import type { JournalSize } from './journal.ts';
import type { Settings } from './options.ts';
import type { MetricKey, Samples } from './stats.ts';
import { STREAM_CHUNK_GAP_MS, STREAM_CHUNKS } from './payloads.ts';

export interface ReportInput {
  settings: Settings;
  date: Date;
  command: string;
  columns: EndpointName[];
  samples: Samples;
  verdicts: Verdict[];
  journal: JournalSize | null;
  sink: { requests: number; bytes: number } | null;
  notes: string[];
  loadStart: number[];
  /** wrk flags of the latency and throughput scenarios. */
  wrk: { latency: string; throughput: string };
  runSeconds: number;
  /** The `--before` section (bench/lib/compare.ts), or '' without --before. */
  comparison: string;
}

type Format = (value: number) => string;
const ms: Format = (v) => v.toFixed(3);
const signedMs: Format = (v) => `${v >= 0 ? '+' : ''}${v.toFixed(3)}`;
const perSecond: Format = (v) => Math.round(v).toString();
const ratio: Format = (v) => `${v.toFixed(2)}×`;
const seconds: Format = (v) => v.toFixed(2);
const mib: Format = (v) => v.toFixed(1);

function rows(transferMiB: number): [MetricKey, string, Format][] {
  return [
    ['p50', 'p50 latency, c=1 (ms)', ms],
    ['p99', 'p99 latency, c=1 (ms)', ms],
    ['addedP50', 'added p50 vs direct (ms)', signedMs],
    ['addedP99', 'added p99 vs direct (ms)', signedMs],
    ['p50VsUndici', 'p50 − pipe-undici p50 (ms)', signedMs],
    ['rps', 'throughput, c=64 (req/s)', perSecond],
    ['xUndici', 'throughput ÷ pipe-undici', ratio],
    ['xHttp', 'throughput ÷ pipe-http', ratio],
    ['xDefault', 'throughput ÷ proxy+default', ratio],
    ['cpuUs', 'server CPU per request, c=64 (µs)', perSecond],
    ['cpuVsUndici', 'CPU per request ÷ pipe-undici', ratio],
    ['cpuVsDefault', 'CPU per request ÷ proxy+default', ratio],
    ['ttfb', 'streamed TTFB (ms)', ms],
    ['addedTtfb', 'added TTFB vs direct (ms)', signedMs],
    ['worstGap', 'worst added SSE gap (ms)', signedMs],
    ['dlSeconds', `download ${transferMiB} MiB (s)`, seconds],
    ['dlRss', `download: server RSS rise (MiB)`, mib],
    ['ulSeconds', `upload ${transferMiB} MiB, chunked (s)`, seconds],
    ['ulRss', `upload: server RSS rise (MiB)`, mib],
  ];
}

function table(header: string[], body: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...body.map(line)].join('\n');
}

/**
 * The command as it reproduces the run: without `--out FILE`, which says only where this report
 * went and would put a path of the machine that ran it into a committed file.
 */
export function reproducibleCommand(command: string): string {
  return command.replace(/\s+--out(?:\s+|=)\S+/g, '').replace(/ --$/, '');
}

function mark(met: boolean | null): string {
  return met === null ? '' : met ? ' ✅' : ' ❌';
}

function metricsTable(input: ReportInput): string {
  const { samples, columns, verdicts } = input;
  const body = rows(input.settings.transferBytes / 2 ** 20).map(([metric, label, format]) => [
    label,
    ...columns.map((name) => {
      const value = samples.median(metric, name);
      if (value === null || Number.isNaN(value)) return '—';
      const verdicts_ = verdicts.filter((v) => v.goal.variant === name && v.goal.metric === metric);
      return format(value) + verdicts_.map((v) => mark(v.met)).join('');
    }),
  ]);
  body.push([
    '**targets met**',
    ...columns.map((name) => {
      const mine = verdicts.filter((v) => v.goal.variant === name && v.met !== null);
      if (mine.length === 0) return '—';
      const met = mine.filter((v) => v.met === true).length;
      return `**${met}/${mine.length}**${mark(met === mine.length)}`;
    }),
  ]);
  return table(['metric', ...columns], body);
}

function verdictTable(verdicts: Verdict[]): string {
  if (verdicts.length === 0) return 'No proxy variant was measured.';
  const formats = new Map(rows(0).map(([metric, , format]) => [metric, format]));
  return table(['variant', 'target', 'median', 'met'], verdicts.map((v) => [
    v.goal.variant,
    v.goal.text + (v.goal.assumed ? ' *(assumed)*' : ''),
    v.value === null ? '—' : (formats.get(v.goal.metric) ?? ms)(v.value),
    v.met === null ? 'not measured' : v.met ? '✅ yes' : '❌ no',
  ]));
}

function auditSection(input: ReportInput): string {
  const { journal, samples } = input;
  if (journal === null) return '';
  const at = (metric: MetricKey, format: Format): string => {
    const value = samples.median(metric, 'proxy+audit');
    return value === null ? '—' : format(value);
  };
  const perRecord = journal.records > 0 ? Math.round(journal.bytes / journal.records).toString() : '—';
  return `\n## Audit journal (proxy+audit)\n\n${table(['figure', 'value'], [
    ['records on disk after the run (lines in *.ndjson)', journal.records.toString()],
    ['journal size (*.ndjson, apparent)', `${(journal.bytes / 1e6).toFixed(1)} MB`],
    ['journal size on disk (allocated, whole AUDIT_DIR)', `${(journal.diskBytes / 1e6).toFixed(1)} MB`],
    ['bytes per record', perRecord],
    ['sustained write rate during throughput (records/s)', at('auditRecordsPerS', perSecond)],
    ['sustained write rate during throughput (MB/s)', at('auditMBPerS', (v) => v.toFixed(2))],
    ['records per completed wrk request', at('auditRecordsPerRequest', (v) => v.toFixed(3))],
  ])}\n`;
}

function perRoundTable(input: ReportInput): string {
  const body = rows(input.settings.transferBytes / 2 ** 20).map(([metric, label, format]) => [
    label,
    ...input.columns.map((name) => input.samples.values(metric, name).map(format).join(' / ') || '—'),
  ]);
  return table(['metric', ...input.columns], body);
}

export function renderReport(input: ReportInput): string {
  const { settings } = input;
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const load = (values: number[]): string => values.map((v) => v.toFixed(2)).join(' ');
  const banner = settings.selfTest
    ? '\n> **SELF-TEST**: the columns of the proxy variants are pipe-undici stand-ins, not src/main.ts. These figures only show that the harness works.\n'
    : '';
  const meta = table(['setting', 'value'], [
    ['date', input.date.toISOString()],
    ['command', `\`${reproducibleCommand(input.command)}\``],
    ['Node', process.version],
    ['CPUs', `${os.availableParallelism()} × ${cpu}`],
    ['load average at start / end', `${load(input.loadStart)} / ${load(os.loadavg())}`],
    ['rounds', `${settings.rounds}; every round restarts, verifies and warms up (wrk -t2 -c64 -d${settings.warmupS}s) each server, and rotates the endpoint order`],
    ['latency', `wrk ${input.wrk.latency}, POST /v1/chat/completions (bench/wrk/chat.lua)`],
    ['throughput', `wrk ${input.wrk.throughput}, same script`],
    ['streaming', `${settings.streamRequests} requests/round on a warm connection, ${STREAM_CHUNKS} chunks ${STREAM_CHUNK_GAP_MS} ms apart + usage + [DONE]`],
    ['large transfers', `${settings.transferBytes / 2 ** 20} MiB download and chunked upload, RSS sampled every 20 ms`],
    ['run time', `${Math.round(input.runSeconds)} s`],
  ]);
  const notes = [
    ...(input.sink === null ? [] : [`OTLP sink received ${input.sink.requests} export requests (${(input.sink.bytes / 1e6).toFixed(2)} MB).`]),
    ...input.notes,
  ];
  return `# Benchmark results

Generated by \`bench/run.ts\`; do not edit by hand.
${banner}
${meta}

Every cell is the median over ${settings.rounds} rounds. Differences and ratios are computed inside each round
(the endpoints were measured back to back), then their median is taken. \`direct\` is the upstream emulator
with no proxy in between. The machine is shared and noisy: compare columns with each other, do not quote
absolute figures. RSS rise is that of the endpoint's own server process (the upstream's for \`direct\`).

## Medians

${metricsTable(input)}

## Targets

${verdictTable(input.verdicts)}
${input.comparison}${auditSection(input)}
## Per-round values

${perRoundTable(input)}
${notes.length > 0 ? `\n## Notes\n\n${notes.map((note) => `- ${note}`).join('\n')}\n` : ''}`;
}
