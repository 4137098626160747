// Findings 9 and 10: the exact answer and record of the requests the proxy refuses itself, of a
// stream cut by shutdown and of a refused WebSocket; and a journal whose directory is deleted.
import { rmSync } from 'node:fs';
import { WebSocket } from 'ws';
import { exchange } from '../lib/client.ts';
import { field, journalIds, journalLines, parseRecord, recordId, type AuditRecord } from '../lib/journal-records.ts';
import { stop } from '../lib/processes.ts';
import { isOpenAiError, rawRequest, type RawResponse } from '../lib/raw-http.ts';
import { healthz } from '../lib/scrape.ts';
import { AUTH, seconds, within, type Probe, type ProbeContext } from './context.ts';

interface Case {
  name: string;
  request: string;
  judge(response: RawResponse, record: AuditRecord | null, upstreamSaw: number): string | null;
}

const CASE_HEADER = 'x-probe-case';

function shaped(r: RawResponse, status?: number): string | null {
  if (status !== undefined && r.status !== status) return `status ${r.status || 'none'}, expected ${status}`;
  if (!(r.headers['content-type'] ?? '').startsWith('application/json')) return `${r.status || 'no'} answer with content-type ${r.headers['content-type'] ?? 'none'}, body ${JSON.stringify(r.body.slice(0, 60))}`;
  if (!isOpenAiError(r.body)) return `body not OpenAI-shaped: ${JSON.stringify(r.body.slice(0, 80))}`;
  return null;
}

const CASES: Case[] = [
  {
    name: 'h2c upgrade',
    request: `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${AUTH}\r\n${CASE_HEADER}: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`,
    judge(r, record) {
      // Served as HTTP/1.1 or refused in the OpenAI shape; either way recorded with that status.
      const shape = r.status === 200 ? null : shaped(r);
      if (shape !== null) return shape;
      if (record === null) return `no record (answer ${r.status})`;
      if (field(record, 'response.status') !== r.status) return `record status ${String(field(record, 'response.status'))} for a ${r.status}`;
      if (r.status >= 400 && field(record, 'outcome') === 'ok') return 'refusal recorded outcome ok';
      return null;
    },
  },
  {
    name: 'bad Expect',
    request: `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${AUTH}\r\n${CASE_HEADER}: expect\r\nExpect: 100-bogus\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`,
    judge: (r) => shaped(r, 417),
  },
  {
    name: 'missing Host',
    request: `GET /v1/models HTTP/1.1\r\nAuthorization: ${AUTH}\r\n${CASE_HEADER}: no-host\r\n\r\n`,
    judge: (r) => shaped(r, 400),
  },
  {
    name: 'CONNECT',
    request: `CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n${CASE_HEADER}: connect\r\n\r\n`,
    judge: (r, record) => shaped(r) ?? (record === null ? 'no record' : null),
  },
  {
    name: 'bad chunk mid-body',
    request: `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${AUTH}\r\n${CASE_HEADER}: bad-chunk\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\nZZ\r\n`,
    judge(r, record, upstreamSaw) {
      const shape = shaped(r, 400);
      if (shape !== null) return shape;
      if (upstreamSaw > 0) return 'upstream received the request head (and part of the body)';
      if (field(record, 'outcome') === 'client_aborted') return 'recorded client_aborted';
      return null;
    },
  },
];

export const errorShapes: Probe = {
  name: 'error-shapes',
  finding: '9',
  goal: 'h2c, a bad Expect, a missing Host, CONNECT and a bad chunk get OpenAI-shaped JSON errors, the right status and an accurate record; a refused WebSocket keeps its body; a stream cut by shutdown is not `client_aborted`',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url, env: { SHUTDOWN_GRACE_MS: '500' } });
    const failures: string[] = [];
    const responses: { name: string; r: RawResponse; c: Case }[] = [];
    for (const c of CASES) responses.push({ name: c.name, r: await rawRequest(proxy.port, c.request, 3000), c });
    // A refused WebSocket (no credential: the emulator answers 401 with an OpenAI error body).
    const refusalId = await new Promise<string | null>((resolve) => {
      const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`);
      const timer = setTimeout(() => ws.terminate(), 5000);
      let id: string | null = null;
      ws.once('unexpected-response', (_req, res) => {
        const header = res.headers['x-proxy-request-id'];
        id = typeof header === 'string' ? header : null;
        res.resume();
        ws.terminate();
      });
      ws.once('error', () => undefined);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve(id);
      });
    });
    // A stream in progress when the proxy is told to stop (grace 500 ms, the stream lasts 10 s).
    const streaming = exchange(proxy.url, false, {
      path: '/v1/chat/completions',
      headers: { authorization: AUTH, 'content-type': 'application/json', 'x-test-chunks': '100', 'x-test-chunk-delay-ms': '100' },
      body: Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'Hi' }] })),
    });
    await within(3000, () => upstream.requests.some((q) => q.headers['x-test-chunks'] === '100'));
    await new Promise((resolve) => setTimeout(resolve, 300)); // some events have flowed
    await stop(proxy.child, 10_000);
    const cut = await streaming;

    const lines = await journalLines(proxy.auditDir);
    const byCase = (name: string): AuditRecord | null =>
      parseRecord(lines.find((line) => line.includes(`"${CASE_HEADER}":"${name}"`)) ?? '') ?? null;
    const caseKey: Record<string, string> = { 'h2c upgrade': 'h2c', 'bad Expect': 'expect', 'missing Host': 'no-host', CONNECT: 'connect', 'bad chunk mid-body': 'bad-chunk' };
    const rows: string[] = [];
    for (const { name, r, c } of responses) {
      const key = caseKey[name] ?? '';
      // Counted now, not when answered: what upstream received may arrive after the client's answer.
      const upstreamSaw = upstream.requests.filter((q) => q.headers[CASE_HEADER] === key).length;
      const problem = c.judge(r, byCase(key), upstreamSaw);
      rows.push(`${name}: ${r.status || 'no answer'} ${r.headers['content-type'] ?? ''} → ${problem ?? 'ok'}`);
      if (problem !== null) failures.push(`${name}: ${problem}`);
    }
    const refusal = parseRecord(lines.find((line) => refusalId !== null && recordId(line) === refusalId) ?? '');
    const refusalBody = field(refusal, 'response.body');
    const refusalProblem = refusal === null ? 'no record' : refusalBody === null || refusalBody === undefined ? 'response.body not captured' : null;
    rows.push(`WebSocket refusal: ${refusalProblem ?? 'body captured'}`);
    if (refusalProblem !== null) failures.push(`WebSocket refusal: ${refusalProblem}`);
    const cutRecord = parseRecord(lines.find((line) => cut.id !== null && recordId(line) === cut.id) ?? '');
    const cutOutcome = field(cutRecord, 'outcome');
    rows.push(`stream cut by shutdown: outcome ${String(cutOutcome)}`);
    if (cutRecord === null || cutOutcome === 'client_aborted') failures.push(`stream cut by shutdown: ${cutRecord === null ? 'no record' : 'recorded client_aborted'}`);
    return {
      pass: failures.length === 0,
      figure: failures.length === 0 ? `${CASES.length + 2} cases answered and recorded as they should` : `${failures.length} of ${CASES.length + 2} wrong: ${failures.join('; ')}`,
      details: rows,
    };
  },
};

export const auditDirRemoved: Probe = {
  name: 'audit-dir-removed',
  finding: '10',
  goal: '`rm -rf AUDIT_DIR` mid-run: within 15 s the journal notices, and the records of new requests land in a recreated AUDIT_DIR',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url });
    const send = (): Promise<{ id: string | null }> =>
      exchange(proxy.url, false, { path: '/v1/chat/completions', headers: { authorization: AUTH, 'content-type': 'application/json' }, body: Buffer.from('{"model":"gpt-4o-mini","messages":[]}') });
    for (let i = 0; i < 5; i++) await send();
    await proxy.journal.settle(500, 5000);
    rmSync(proxy.auditDir, { recursive: true, force: true });
    const t0 = performance.now();
    const after: string[] = [];
    let recoveredMs = -1;
    await within(15_000, async () => {
      const { id } = await send();
      if (id !== null) after.push(id);
      const written = await journalIds(proxy.auditDir);
      if (after.some((sent) => written.has(sent))) recoveredMs = performance.now() - t0;
      return recoveredMs >= 0;
    });
    const health = await healthz(proxy.adminUrl);
    const writable = JSON.stringify((health?.['audit'] as Record<string, unknown> | undefined)?.['journal'] ?? null);
    return {
      pass: recoveredMs >= 0,
      figure: recoveredMs >= 0 ? `records back in AUDIT_DIR ${seconds(recoveredMs)} after the deletion` : `no record of ${after.length} later requests in AUDIT_DIR after 15 s`,
      details: [`/healthz audit.journal afterwards: ${writable}`],
    };
  },
};
