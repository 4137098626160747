/**
 * The policy's limits in one process (shared/design/policy-file.md, "Limits"): requests, tokens
 * and cost per institution, per virtual key on top of it, and `defaults`; the 429 the official
 * SDK raises as RateLimitError with code quota_exceeded and the x-proxy-quota-* headers; nothing
 * refused reaches upstream; records of refusals carry `quota`; /quotas and the quota metrics;
 * window rollover on an injected clock; counts kept across a restart and a SIGKILL (rebuilt
 * from the audit journal).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI, { RateLimitError } from 'openai';
import { request } from 'undici';
import { WebSocket } from 'ws';
import type { AuditRecord } from '../src/audit/record/record.ts';
import { fingerprint } from '../src/fingerprint.ts';
import { Limiter } from '../src/policy/limits.ts';
import { LimitCounters } from '../src/policy/limits-counters.ts';
import { rebuildCounts } from '../src/policy/limits-rebuild.ts';
import { windowBounds } from '../src/policy/limits-windows.ts';
import { newVirtualKey } from '../src/policy/virtual-key-format.ts';
import type { Limit } from '../src/policy/types.ts';
import type { ExchangeFacts } from '../src/capture/facts.ts';
import type { Exchange } from '../src/proxy/observer.ts';
import { recordOf } from './support/audit.ts';
import { freePort, until } from './support/net.ts';
import { policyDir } from './support/policy.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { EMULATOR_USAGE, startUpstream, type Upstream } from './support/upstream.ts';

const HEADER = 'x-institution-id';
const LIMITED_KEY = newVirtualKey();
const OPEN_KEY = newVirtualKey();
const TOKENS_PER_CHAT = EMULATOR_USAGE.prompt + EMULATOR_USAGE.completion;
// 10 000 USD per 1M tokens of every kind: 18 tokens cost 0.18 USD.
const COST_PER_CHAT = (TOKENS_PER_CHAT * 10_000) / 1e6;

// Day and month windows: a test never straddles their boundary in practice (a minute window could).
const POLICY = `version: 1
virtualKeys:
  - { fingerprint: ${fingerprint(LIMITED_KEY)}, institution: gamma, upstreamKey: { env: OPENAI_API_KEY_GAMMA }, limits: [ { window: day, requests: 2 } ] }
  - { fingerprint: ${fingerprint(OPEN_KEY)}, institution: gamma, upstreamKey: { env: OPENAI_API_KEY_GAMMA } }
institutions:
  acme: { limits: [ { window: day, requests: 3 }, { window: month, requests: 1000 } ] }
  tok: { limits: [ { window: day, tokens: 30 } ] }
  spend: { limits: [ { window: month, costUsd: 0.3 } ] }
  gamma: { limits: [ { window: day, requests: 4 } ] }
  listed: {}
  streamer: { limits: [ { window: day, tokens: 1000 } ] }
  unlimited: { limits: [] }
institutionHeader:
  name: ${HEADER}
  trustedFrom: [ 127.0.0.1, "::ffff:127.0.0.1" ]
defaults:
  limits: [ { window: day, requests: 2 } ]
prices:
  priced-model: { input: 10000, cachedInput: 10000, output: 10000 }
`;

const files = policyDir();
let upstream: Upstream;
let proxy: TestProxy;

function env(auditDir: string): Record<string, string> {
  return {
    UPSTREAM_URL: upstream.url,
    POLICY_FILE: join(files.dir, 'policy.yaml'),
    OPENAI_API_KEY_GAMMA: 'sk-real-gamma-0123456789abcdef',
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: auditDir,
    METRICS_ENABLED: 'true',
  };
}

before(async () => {
  upstream = await startUpstream();
  files.write('policy.yaml', POLICY);
  proxy = await startTestProxy(env(join(files.dir, 'audit')));
});

after(async () => {
  await proxy.close();
  await upstream.close();
  files.remove();
});

function client(p: TestProxy, options: { institution?: string; key?: string } = {}): OpenAI {
  return new OpenAI({
    baseURL: `${p.url}/v1`,
    apiKey: options.key ?? 'sk-client-own-key-0000',
    maxRetries: 0,
    defaultHeaders: options.institution === undefined ? {} : { [HEADER]: options.institution },
  });
}

async function chat(c: OpenAI, model = 'gpt-4o-mini'): Promise<void> {
  await c.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] });
}

async function refused(c: OpenAI, model = 'gpt-4o-mini'): Promise<RateLimitError> {
  const err: unknown = await chat(c, model).then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(err instanceof RateLimitError, `a RateLimitError, got ${String(err)}`);
  assert.equal(err.status, 429);
  assert.equal(err.code, 'quota_exceeded');
  return err;
}

interface WindowReport {
  window: string;
  kind: string;
  limit: number;
  used: number;
  remaining: number;
  reset: string;
}
interface Report {
  institutions: Record<string, WindowReport[]>;
  virtualKeys: Record<string, { institution: string; windows: WindowReport[] }>;
}

async function quotas(p: TestProxy): Promise<Report> {
  const res = await request(`${p.adminUrl}/quotas`);
  assert.equal(res.statusCode, 200);
  return (await res.body.json()) as Report;
}

async function used(p: TestProxy, institution: string, kind: string): Promise<number | undefined> {
  return (await quotas(p)).institutions[institution]?.find((w) => w.kind === kind)?.used;
}

describe('limits in one process', () => {
  test('a request limit of 3: the 4th is a 429 the SDK raises as RateLimitError quota_exceeded, with the quota headers; nothing reaches upstream; the record says rejected with quota', async () => {
    const acme = client(proxy, { institution: 'acme' });
    const sent = upstream.requests.length;
    for (let i = 0; i < 3; i++) await chat(acme);
    assert.equal(upstream.requests.length, sent + 3);

    const err = await refused(acme);
    assert.equal(upstream.requests.length, sent + 3, 'the refused request never reached upstream');
    assert.equal(err.type, 'requests');
    assert.match(err.message, /day limit of 3 requests/);
    const dayEnd = windowBounds('day', Date.now()).end;
    assert.equal(err.headers.get('x-proxy-quota-window'), 'day');
    assert.equal(err.headers.get('x-proxy-quota-limit'), '3');
    assert.equal(err.headers.get('x-proxy-quota-remaining'), '0');
    assert.equal(err.headers.get('x-proxy-quota-reset'), new Date(dayEnd).toISOString());
    const retryAfter = Number(err.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= Math.ceil((dayEnd - Date.now()) / 1000) + 1, `retry-after ${retryAfter}`);

    const record: AuditRecord = await recordOf(proxy, String(err.headers.get('x-proxy-request-id')));
    assert.equal(record.outcome, 'rejected');
    assert.deepEqual(record.quota, { window: 'day', kind: 'requests', limit: 3, used: 3 });
    assert.equal(record.upstream, '');
    assert.equal(record.institution, 'acme');
    assert.equal(record.response.status, 429);

    assert.equal(err.headers.get('x-should-retry'), 'false', 'an SDK would otherwise sleep until the day ends');

    // A refused request is not counted: still 3, and still refused, at once, by an SDK left to retry as it does by default.
    const defaultRetries = new OpenAI({ baseURL: `${proxy.url}/v1`, apiKey: 'sk-client-own-key-0000', defaultHeaders: { [HEADER]: 'acme' } });
    const began = Date.now();
    await refused(defaultRetries);
    assert.ok(Date.now() - began < 5_000, 'no retry');
    assert.equal(await used(proxy, 'acme', 'requests'), 3);
    assert.equal(upstream.requests.length, sent + 3);
  });

  test('a token limit applies once the usage is known: 18 + 18 tokens pass under 30 only while the count is below it', async () => {
    const tok = client(proxy, { institution: 'tok' });
    await chat(tok);
    await until(async () => (await used(proxy, 'tok', 'tokens')) === TOKENS_PER_CHAT, 10_000, 'the first usage counted');
    await chat(tok); // 18 < 30: admitted, and it takes the count past the limit (the bounded overshoot)
    await until(async () => (await used(proxy, 'tok', 'tokens')) === 2 * TOKENS_PER_CHAT, 10_000, 'the second usage counted');
    const err = await refused(tok);
    assert.equal(err.type, 'tokens');
    assert.equal(err.headers.get('x-proxy-quota-remaining'), '0');
    const record = await recordOf(proxy, String(err.headers.get('x-proxy-request-id')));
    assert.deepEqual(record.quota, { window: 'day', kind: 'tokens', limit: 30, used: 2 * TOKENS_PER_CHAT });
  });

  test('a cost limit counts openai.costUsd: 0.18 + 0.18 USD against 0.3 USD a month', async () => {
    const spend = client(proxy, { institution: 'spend' });
    await chat(spend, 'priced-model');
    await until(async () => Math.abs(((await used(proxy, 'spend', 'costUsd')) ?? 0) - COST_PER_CHAT) < 1e-9, 10_000, 'the first cost counted');
    await chat(spend, 'priced-model');
    await until(async () => Math.abs(((await used(proxy, 'spend', 'costUsd')) ?? 0) - 2 * COST_PER_CHAT) < 1e-9, 10_000, 'the second cost counted');
    const err = await refused(spend, 'priced-model');
    assert.equal(err.type, 'insufficient_quota');
    assert.equal(err.headers.get('x-proxy-quota-window'), 'month');
    assert.equal(err.headers.get('x-proxy-quota-limit'), '0.3');
    assert.match(err.message, /month limit of 0\.3 USD/);
  });

  test("a virtual key's limit is on top of its institution's", async () => {
    const limited = client(proxy, { key: LIMITED_KEY });
    const open = client(proxy, { key: OPEN_KEY });
    await chat(limited);
    await chat(limited);
    const err = await refused(limited);
    assert.match(err.message, /virtual key sha256:/);
    // The institution still has room for its other key: 2 of 4 used.
    await chat(open);
    await chat(open);
    const over = await refused(open);
    assert.match(over.message, /institution gamma/);
    const report = await quotas(proxy);
    assert.deepEqual(
      report.virtualKeys[fingerprint(LIMITED_KEY)]?.windows.map((w) => [w.window, w.kind, w.limit, w.used, w.remaining]),
      [['day', 'requests', 2, 2, 0]],
    );
    assert.equal(report.virtualKeys[fingerprint(OPEN_KEY)], undefined, 'a key without limits of its own has no windows');
    const record = await recordOf(proxy, String(err.headers.get('x-proxy-request-id')));
    assert.equal(record.institutionSource, 'virtual_key');
    assert.equal(record.apiKey?.fingerprint, fingerprint(LIMITED_KEY));
  });

  test('defaults apply to an institution without limits of its own, listed or not; an empty list is no limit', async () => {
    for (const institution of ['listed', 'newcomer']) {
      const c = client(proxy, { institution });
      await chat(c);
      await chat(c);
      const err = await refused(c);
      assert.equal(err.headers.get('x-proxy-quota-limit'), '2');
    }
    const unlimited = client(proxy, { institution: 'unlimited' });
    for (let i = 0; i < 3; i++) await chat(unlimited);
    const none = client(proxy);
    for (let i = 0; i < 3; i++) await chat(none);
  });

  test("a limited institution's stream is asked for its usage upstream (not estimated); an unlimited one's is forwarded as sent", async () => {
    const streamOf = async (institution: string): Promise<{ sent: Record<string, unknown>; usageChunks: number; id: string }> => {
      const before = upstream.requests.length;
      const { data: stream, response } = await client(proxy, { institution })
        .chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true })
        .withResponse();
      let usageChunks = 0;
      for await (const chunk of stream) if (chunk.usage) usageChunks++;
      const sent = JSON.parse((upstream.requests[before]?.body ?? Buffer.from('{}')).toString('utf8')) as Record<string, unknown>;
      return { sent, usageChunks, id: String(response.headers.get('x-proxy-request-id')) };
    };
    const limited = await streamOf('streamer');
    assert.deepEqual(limited.sent.stream_options, { include_usage: true });
    assert.equal(limited.usageChunks, 0, 'the client did not ask for the usage chunk and does not get it');
    const record = await recordOf(proxy, limited.id);
    assert.equal(record.openai?.usageEstimated, undefined);
    assert.equal(record.openai?.streamUsageInjected, true);
    await until(async () => (await used(proxy, 'streamer', 'tokens')) === TOKENS_PER_CHAT, 10_000, 'the reported usage counted');

    const unlimited = await streamOf('unlimited');
    assert.equal(unlimited.sent.stream_options, undefined);
  });

  test('/quotas lists each institution\'s windows: used, limit, remaining, reset', async () => {
    const report = await quotas(proxy);
    const acme = report.institutions.acme;
    assert.deepEqual(acme?.[0], { window: 'day', kind: 'requests', limit: 3, used: 3, remaining: 0, reset: new Date(windowBounds('day', Date.now()).end).toISOString() });
    assert.deepEqual(acme?.[1], { window: 'month', kind: 'requests', limit: 1000, used: 3, remaining: 997, reset: new Date(windowBounds('month', Date.now()).end).toISOString() });
    assert.equal(report.institutions.unlimited, undefined);
    assert.equal(report.institutions.newcomer?.[0]?.used, 2);
  });

  test('a Realtime handshake over the limit is refused the same way, before anything is opened upstream', async () => {
    const sessions = upstream.wsSessions.length;
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/v1/realtime?model=gpt-4o-realtime-preview`, { headers: { [HEADER]: 'acme' } });
    ws.on('error', () => undefined); // terminate() before the handshake completed reports one
    const [, res] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
    assert.equal(res.statusCode, 429);
    assert.equal(res.headers['x-proxy-quota-window'], 'day');
    assert.equal(res.headers['x-proxy-quota-remaining'], '0');
    assert.ok(Number(res.headers['retry-after']) >= 1);
    let body = '';
    for await (const chunk of res) body += String(chunk);
    assert.equal((JSON.parse(body) as { error: { code: string } }).error.code, 'quota_exceeded');
    ws.terminate();
    assert.equal(upstream.wsSessions.length, sessions);
  });

  test('metrics: refusals by institution, window and kind; the used ratio of each window', async () => {
    const scrape = async (): Promise<string> => (await request(`${proxy.adminUrl}/metrics`)).body.text();
    // acme: two HTTP refusals and the Realtime handshake (its facts come once its socket closed).
    await until(async () => /openai_proxy_quota_rejected_total\{institution="acme",window="day",kind="requests"\} 3\n/.test(await scrape()), 10_000, 'three acme refusals counted');
    const text = await scrape();
    assert.match(text, /openai_proxy_quota_rejected_total\{institution="tok",window="day",kind="tokens"\} 1/);
    assert.match(text, /openai_proxy_quota_used_ratio\{institution="acme",window="day",kind="requests"\} 1\n/);
    assert.match(text, /openai_proxy_quota_used_ratio\{institution="acme",window="month",kind="requests"\} 0\.003\n/);
  });

  test('/healthz no longer names limits as not enforced', async () => {
    const health = (await (await request(`${proxy.adminUrl}/healthz`)).body.json()) as { policy: { notEnforced?: string[] } };
    assert.ok(!(health.policy.notEnforced ?? []).includes('limits'));
  });
});

describe('windows on an injected clock', () => {
  const exchange = (): Exchange => ({ origin: 'http://upstream' }) as unknown as Exchange;
  const facts = (tokens: number): ExchangeFacts => ({ usage: { inputTokens: tokens, outputTokens: 0 }, costUsd: null }) as unknown as ExchangeFacts;
  const limits = (...own: Limit[]): { institution: Limit[]; virtualKey: Limit[] } => ({ institution: own, virtualKey: [] });

  test('a minute window rolls over at the UTC minute, not 60 s after the first request', () => {
    let now = Date.UTC(2026, 11, 7, 10, 15, 50);
    const limiter = new Limiter({ now: () => now });
    const perMinute = limits({ window: 'minute', kind: 'requests', limit: 2 });
    assert.equal(limiter.admit(exchange(), perMinute, 'acme', null), null);
    assert.equal(limiter.admit(exchange(), perMinute, 'acme', null), null);
    const err = limiter.admit(exchange(), perMinute, 'acme', null);
    assert.ok(err !== null && !(err instanceof Promise), "local counts answer at once");
    assert.equal(err.responseHeaders['retry-after'], '10');
    assert.equal(err.responseHeaders['x-proxy-quota-reset'], '2026-12-07T10:16:00.000Z');
    assert.equal(err.responseHeaders['x-should-retry'], undefined, 'within a minute, the SDKs may wait and retry');
    now = Date.UTC(2026, 11, 7, 10, 16, 0);
    assert.equal(limiter.admit(exchange(), perMinute, 'acme', null), null, 'a new minute, a new count');
  });

  test('the month window ends at the next calendar month (December into January); a day at UTC midnight', () => {
    assert.deepEqual(windowBounds('month', Date.UTC(2026, 11, 31, 23, 59)), { start: Date.UTC(2026, 11, 1), end: Date.UTC(2027, 0, 1) });
    assert.deepEqual(windowBounds('day', Date.UTC(2026, 1, 28, 12)), { start: Date.UTC(2026, 1, 28), end: Date.UTC(2026, 2, 1) });
    assert.deepEqual(windowBounds('hour', Date.UTC(2026, 1, 28, 12, 30)), { start: Date.UTC(2026, 1, 28, 12), end: Date.UTC(2026, 1, 28, 13) });
  });

  test('tokens of an exchange admitted in a window that has since ended are not counted in the new one', () => {
    let now = Date.UTC(2026, 11, 7, 10, 59, 59);
    const limiter = new Limiter({ now: () => now });
    const perHour = limits({ window: 'hour', kind: 'tokens', limit: 100 });
    const slow = exchange();
    assert.equal(limiter.admit(slow, perHour, 'acme', null), null);
    now += 2_000; // the exchange ends in the next hour
    limiter.facts(slow, facts(500));
    assert.equal(limiter.counters.used('institution:acme', 'hour', 'tokens', now), 0);
    assert.equal(limiter.counters.used('institution:acme', 'day', 'tokens', now), 500, 'still in the same day');
  });

  test('a request admitted but never sent upstream gives its count back', () => {
    const now = Date.UTC(2026, 11, 7, 10, 0, 0);
    const limiter = new Limiter({ now: () => now });
    const one = limits({ window: 'day', kind: 'requests', limit: 1 });
    const unsent = { origin: null } as unknown as Exchange;
    assert.equal(limiter.admit(unsent, one, 'acme', null), null);
    limiter.facts(unsent, facts(0));
    assert.equal(limiter.admit(exchange(), one, 'acme', null), null);
  });
});

describe('counts survive the process', () => {
  test('the rebuild counts what each record says, reads only the windows still open, and is not fooled by bodies', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rebuild-'));
    try {
      const now = Date.UTC(2026, 11, 7, 12, 0, 0);
      // Key order as build-record.ts writes it; bodies holding the keys the reader looks for.
      const line = (startedAt: number, upstream: string, extra: Record<string, unknown> = {}): string =>
        JSON.stringify({
          _id: 'x', schema: 1, startedAt: { $date: new Date(startedAt).toISOString() }, institution: 'acme', institutionSource: 'virtual_key',
          client: { address: null, userAgent: ',"request":{' }, apiKey: { fingerprint: 'sha256:00aa00aa00aa00aa', hint: 'sk-…' }, upstream,
          request: { body: { openai: { costUsd: 1000 }, outcome: 1 } },
          response: { body: { openai: { usage: { inputTokens: 1000 } } } },
          openai: { usage: { inputTokens: 11, outputTokens: 7 }, costUsd: 0.25, outputText: '","openai":{"costUsd":99}' },
          outcome: 'ok', error: null, quota: null, trace: null, ...extra,
        });
      const segment = join(dir, 'audit-0000000000000001.ndjson');
      writeFileSync(
        segment,
        [
          line(now - 1000, 'http://up'),
          line(now - 2000, ''), // refused before upstream: tokens and cost only (none here)
          line(Date.UTC(2026, 11, 6, 23, 0), 'http://up'), // yesterday: month only
          line(Date.UTC(2026, 10, 30), 'http://up'), // last month: nothing
          '{"torn',
        ].join('\n'),
      );
      const old = join(dir, 'audit-0000000000000000.ndjson');
      writeFileSync(old, `${line(now - 500, 'http://up')}\n`);
      utimesSync(old, new Date(Date.UTC(2026, 10, 29)), new Date(Date.UTC(2026, 10, 29))); // last written last month: not read
      const counters = new LimitCounters();
      const stats = await rebuildCounts(counters, [old, segment], now);
      assert.equal(stats.segments, 1);
      assert.equal(stats.lines, 4, 'the torn last line is left out');
      assert.equal(counters.used('institution:acme', 'day', 'requests', now), 1);
      assert.equal(counters.used('institution:acme', 'day', 'tokens', now), 36);
      assert.ok(Math.abs(counters.used('institution:acme', 'day', 'costUsd', now) - 0.5) < 1e-12);
      assert.equal(counters.used('institution:acme', 'month', 'requests', now), 2);
      assert.equal(counters.used('virtualKey:sha256:00aa00aa00aa00aa', 'month', 'tokens', now), 54);
      const dayOnly = new LimitCounters();
      await rebuildCounts(dayOnly, [segment], now, 'day');
      assert.equal(dayOnly.used('institution:acme', 'month', 'requests', now), 1, 'a day limit reads the day only');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('close and start again on the same AUDIT_DIR: requests and tokens counted before are kept', async () => {
    const dir = join(files.dir, 'restart-audit');
    let first: TestProxy | null = await startTestProxy(env(dir));
    try {
      const acme = client(first, { institution: 'acme' });
      await chat(acme);
      await chat(acme);
      await chat(client(first, { institution: 'tok' }));
      await until(async () => (await used(first as TestProxy, 'tok', 'tokens')) === TOKENS_PER_CHAT);
      await first.close();
      first = null;
      const second = await startTestProxy(env(dir));
      try {
        assert.equal(await used(second, 'acme', 'requests'), 2);
        assert.equal(await used(second, 'tok', 'tokens'), TOKENS_PER_CHAT);
        const acme2 = client(second, { institution: 'acme' });
        await chat(acme2);
        await refused(acme2);
      } finally {
        await second.close();
      }
    } finally {
      await first?.close();
    }
  });

  test('SIGKILL, then start again: every request whose record reached the journal is still counted', async () => {
    const dir = join(files.dir, 'kill-audit');
    const [port, adminPort] = [await freePort(), await freePort()];
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { ...process.env, ...env(dir), PORT: String(port), ADMIN_PORT: String(adminPort), AUDIT_FSYNC: 'interval' },
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    try {
      await until(
        async () => {
          const res = await request(`http://127.0.0.1:${adminPort}/readyz`).catch(() => null);
          await res?.body.dump();
          return res?.statusCode === 200;
        },
        30_000,
        'the child proxy ready',
      );
      const acme = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'sk-x', maxRetries: 0, defaultHeaders: { [HEADER]: 'acme' } });
      await chat(acme);
      await chat(acme);
      await chat(acme);
      // The records are built after the responses; wait until the journal holds the three lines.
      const lines = (): number =>
        readdirSync(dir)
          .filter((f) => f.endsWith('.ndjson'))
          .reduce((n, f) => n + readFileSync(join(dir, f), 'utf8').split('\n').length - 1, 0);
      await until(() => lines() >= 3, 10_000, 'three journal lines');
    } finally {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    const again = await startTestProxy(env(dir));
    try {
      assert.equal(await used(again, 'acme', 'requests'), 3);
      await refused(client(again, { institution: 'acme' }));
    } finally {
      await again.close();
    }
  });
});
