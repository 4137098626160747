// Findings 4, 7 and 8: what is routed is what is recorded, nothing leaves the base path, and no
// credential reaches a record.
import { createHash } from 'node:crypto';
import { WebSocket } from 'ws';
import { EMULATOR_USAGE } from '../../test/support/upstream.ts';
import { exchange } from '../lib/client.ts';
import { field, journalLines, parseRecord, recordId } from '../lib/journal-records.ts';
import { rawRequest } from '../lib/raw-http.ts';
import { metricValue, scrapeMetrics } from '../lib/scrape.ts';
import { AUTH, within, type Probe, type ProbeContext } from './context.ts';

const CHAT_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hello' }] });

/** Waits for the record of `id` and returns its line (null after 10 s). */
async function recordLine(dir: string, id: string | null): Promise<string | null> {
  let found: string | null = null;
  if (id === null) return null;
  await within(10_000, async () => {
    found = (await journalLines(dir)).find((line) => recordId(line) === id) ?? null;
    return found !== null;
  });
  return found;
}

export const absoluteForm: Probe = {
  name: 'absolute-form-target',
  finding: '4',
  goal: '`POST http://user:SECRET@api.openai.com/v1/chat/completions` is accounted as chat: openai not null, tokens counted, request.path origin-form, no userinfo stored, no operation="none" metric',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url });
    const secret = 'SECRETuserinfo0001';
    const r = await rawRequest(proxy.port,
      `POST http://probe-user:${secret}@api.openai.com/v1/chat/completions HTTP/1.1\r\nHost: api.openai.com\r\nAuthorization: ${AUTH}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(CHAT_BODY)}\r\nConnection: close\r\n\r\n${CHAT_BODY}`);
    const line = await recordLine(proxy.auditDir, r.headers['x-proxy-request-id'] ?? null);
    const record = line === null ? null : parseRecord(line);
    const metrics = (await scrapeMetrics(proxy.adminUrl)) ?? '';
    const problems: string[] = [];
    if (r.status !== 200) problems.push(`status ${r.status}`);
    if (record === null) problems.push('no record');
    if (field(record, 'openai') === null || field(record, 'openai') === undefined) problems.push('openai: null');
    if (field(record, 'openai.usage.totalTokens') !== EMULATOR_USAGE.total) problems.push(`totalTokens ${String(field(record, 'openai.usage.totalTokens'))}`);
    if (field(record, 'request.path') !== '/v1/chat/completions') problems.push(`request.path ${JSON.stringify(field(record, 'request.path'))}`);
    if (line?.includes(secret) === true) problems.push('userinfo stored');
    if (metrics.includes(secret)) problems.push('userinfo in /metrics');
    const none = metricValue(metrics, 'openai_proxy_requests_total', { operation: 'none' });
    if (none !== null && none > 0) problems.push(`requests_total{operation="none"} ${none}`);
    return { pass: problems.length === 0, figure: problems.length === 0 ? 'accounted as chat, path /v1/chat/completions, no userinfo' : problems.join('; ') };
  },
};

const DOT_CASES = ['/../admin/keys', '/%2e%2e/admin/keys', '/v1/../../admin/keys', '/v1/%2E%2e/%2e%2E/admin/keys', '/.%2e/admin/keys'];
const DOT_SEGMENT = /(^|\/)(\.|%2e){1,2}(\/|\?|$)/i;

export const dotSegments: Probe = {
  name: 'dot-segments-base-path',
  finding: '7',
  goal: 'with UPSTREAM_URL .../openai, `/../admin/keys` (raw or %2e) is refused 400 or stays under /openai/ with no dot segment; `/backend-api/../v1/models` does not reach the /backend-api/ origin',
  async run(ctx: ProbeContext) {
    const main = await ctx.startUpstream();
    const backend = await ctx.startUpstream();
    const proxy = await ctx.startProxy({
      upstreamUrl: `${main.url}/openai`,
      env: { UPSTREAM_ROUTES: JSON.stringify({ '/backend-api/': backend.url }) },
    });
    const failures: string[] = [];
    const send = async (target: string): Promise<{ status: number; main: string[]; backend: string[] }> => {
      const [m, b] = [main.requests.length, backend.requests.length];
      const r = await rawRequest(proxy.port, `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${AUTH}\r\nConnection: close\r\n\r\n`);
      return { status: r.status, main: main.requests.slice(m).map((q) => q.url), backend: backend.requests.slice(b).map((q) => q.url) };
    };
    for (const target of DOT_CASES) {
      const seen = await send(target);
      const escaped = seen.main.filter((url) => !url.startsWith('/openai/') || DOT_SEGMENT.test(url));
      if (seen.status !== 400 && (escaped.length > 0 || seen.backend.length > 0)) failures.push(`${target} → upstream ${[...seen.main, ...seen.backend].join(', ')} (status ${seen.status})`);
    }
    const backendCase = await send('/backend-api/../v1/models');
    if (backendCase.status !== 400 && backendCase.backend.length > 0) failures.push(`/backend-api/../v1/models → /backend-api/ origin as ${backendCase.backend.join(', ')}`);
    return {
      pass: failures.length === 0,
      figure: failures.length === 0 ? `${DOT_CASES.length + 1} targets refused or kept under the base path` : `${failures.length} escaped: ${failures.join('; ')}`,
    };
  },
};

export const secrets: Probe = {
  name: 'secrets-in-records',
  finding: '8',
  goal: 'no credential in any record (query, headers both ways, JSON body, URL path, sk- strings, the Realtime subprotocol in any case); the whole bearer credential fingerprinted',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url });
    const mark = (what: string): string => `probeSecret${what}Zq81`;
    const queryNames = ['x-api-key', 'access-token', 'client_secret', 'password', 'secret', 'auth', 'authorization', 'openai_api_key'];
    const markers = new Map<string, string>(); // marker -> where it was put
    const query = queryNames.map((name, i) => {
      markers.set(mark(`Q${i}`), `query ${name}`);
      return `${name}=${mark(`Q${i}`)}`;
    }).join('&');
    const json = { authorization: AUTH, 'content-type': 'application/json' };
    const send = (path: string, headers: Record<string, string>, body?: string): Promise<unknown> =>
      exchange(proxy.url, false, { method: body === undefined ? 'GET' : 'POST', path, headers, body: body === undefined ? undefined : Buffer.from(body) });
    await send(`/v1/models?${query}`, json);
    markers.set(mark('H1'), 'header x-api-key').set(mark('H2'), 'header x-goog-api-key').set(mark('U1'), "upstream's x-api-key").set(mark('U2'), "upstream's x-goog-api-key");
    await send('/v1/models', { ...json, 'x-api-key': mark('H1'), 'x-goog-api-key': mark('H2'), 'x-test-response-header': `x-api-key=${mark('U1')}` });
    await send('/v1/models', { ...json, 'x-test-response-header': `x-goog-api-key=${mark('U2')}` });
    markers.set(mark('B1'), 'JSON body api_key');
    await send('/v1/chat/completions', json, JSON.stringify({ model: 'gpt-4o-mini', api_key: mark('B1'), messages: [{ role: 'user', content: 'Hi' }] }));
    // Shaped like a real project key (sk-proj- and ~150 characters), so any key pattern matches it.
    const keyLike = (what: string): string => `sk-proj-${mark(what)}${'Xq7T3BlbkFJaB9c'.repeat(9)}`;
    const pathKey = keyLike('P1');
    markers.set(mark('P1'), 'sk- key in the URL path');
    await send(`/v1/files/${pathKey}/content`, json);
    const bodyKey = keyLike('S1');
    markers.set(mark('S1'), 'sk- key in a message');
    await send('/v1/chat/completions', json, JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `my key is ${bodyKey}` }] }));
    markers.set(mark('A1'), 'the bearer key itself');
    await send('/v1/models', { authorization: `Bearer ${keyLike('A1')}` });
    // The Realtime subprotocol in another case than the documented `openai-insecure-api-key.`.
    markers.set(mark('W1'), 'Realtime subprotocol OpenAI-Insecure-API-Key.');
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime', `OpenAI-Insecure-API-Key.${keyLike('W1')}`]);
      const timer = setTimeout(() => ws.terminate(), 5000);
      ws.once('open', () => ws.close(1000));
      ws.once('error', () => undefined);
      ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    // Two keys sharing their first word must not share a fingerprint.
    const first = await exchange(proxy.url, false, { method: 'GET', path: '/v1/models', headers: { authorization: 'Bearer My API Key' } });
    const second = await exchange(proxy.url, false, { method: 'GET', path: '/v1/models', headers: { authorization: 'Bearer My Other Key' } });
    await proxy.journal.settle(1000, 10_000);
    const lines = await journalLines(proxy.auditDir);
    // The emulator's instruction header carries the upstream markers in its value (it is how they
    // are put into upstream's answer); it is not a credential, so it is left out of the search.
    const searched = lines.map((line) => line.replace(/"x-test-response-header":"[^"]*"/g, ''));
    const leaked = [...markers].filter(([marker]) => searched.some((line) => line.includes(marker))).map(([, where]) => where);
    const fingerprintOf = (id: string | null): unknown => field(parseRecord(lines.find((line) => recordId(line) === id) ?? '{}'), 'apiKey.fingerprint');
    const [fa, fb] = [fingerprintOf(first.id), fingerprintOf(second.id)];
    const sameFingerprint = fa !== undefined && fa === fb;
    const wholeKey = `sha256:${createHash('sha256').update('My API Key').digest('hex').slice(0, 16)}`;
    const problems = [...leaked.map((where) => `leaked: ${where}`)];
    if (sameFingerprint) problems.push(`"Bearer My API Key" and "Bearer My Other Key" share fingerprint ${JSON.stringify(fa)}`);
    return {
      pass: problems.length === 0 && fa !== undefined,
      figure: problems.length === 0 ? `${markers.size} secrets placed, none stored; bearer fingerprinted whole` : `${leaked.length} of ${markers.size} leaked; ${problems.slice(leaked.length).join('; ') || 'fingerprints differ'}`,
      details: [...leaked.map((where) => `leaked: ${where}`), `fingerprint of "Bearer My API Key": ${JSON.stringify(fa) ?? 'none'} (of the whole credential it would be ${wholeKey})`],
    };
  },
};
