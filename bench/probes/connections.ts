// Finding 1 (no client timeouts): slowloris, silent connections, slow uploads, and idle
// connections against an fd limit of 1,024.
import http from 'node:http';
import { exchange, percentile } from '../lib/client.ts';
import { CHAT_REQUEST } from '../lib/payloads.ts';
import { Trickle } from '../lib/trickle.ts';
import { AUTH, seconds, within, type Probe, type ProbeContext } from './context.ts';

const CHAT = Buffer.from(JSON.stringify(CHAT_REQUEST));
const SLOW_HEAD = `GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${AUTH}\r\n`;

/** `n` JSON chat requests, `concurrency` at a time on kept-alive connections; latencies in ms. */
async function normalRequests(url: string, n: number, concurrency: number): Promise<{ ms: number[]; failed: string[] }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const ms: number[] = [];
  const failed: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next++ < n) {
      const r = await exchange(url, agent, { path: '/v1/chat/completions', headers: { authorization: AUTH, 'content-type': 'application/json' }, body: CHAT, timeoutMs: 10_000 });
      if (r.status === 200 && r.error === null) ms.push(r.ms);
      else failed.push(`${r.status} ${r.error ?? ''}`.trim());
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return { ms, failed };
}

/** How many connections outlived `limitMs` (closed late by the proxy, or still open). */
function overdue(trickle: Trickle, limitMs: number): number {
  const { closed, open } = trickle.lifetimes();
  return closed.filter((ms) => ms > limitMs).length + open.filter((ms) => ms > limitMs).length;
}

export const slowloris: Probe = {
  name: 'slowloris',
  finding: '1',
  goal: '1,000 slowloris connections (a header byte every 5 s, reopened when closed): normal requests p99 < 50 ms, and each closed by the proxy within CLIENT_HEADERS_TIMEOUT_MS',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url });
    await normalRequests(proxy.url, 50, 2); // warm-up
    const quiet = await normalRequests(proxy.url, 200, 2);
    const limit = ctx.limits.headersMs + ctx.limits.slackMs;
    const attack = new Trickle({ port: proxy.port, count: 1000, prefix: SLOW_HEAD, drip: 'X-Slow: 1\r\n', gapMs: 5000, reopen: true });
    try {
      await attack.start();
      ctx.note(`${attack.open} slowloris connections open`);
      const loaded = await normalRequests(proxy.url, 200, 2);
      const openDuring = attack.open;
      // Every connection of the first 1,000 must have been closed by the proxy by now.
      await within(limit, () => attack.closedByPeer.length >= 1000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const late = overdue(attack, limit);
      const p99 = percentile(loaded.ms, 99);
      const closed = attack.closedByPeer.length;
      const pass = p99 < 50 && loaded.failed.length === 0 && closed >= 1000 && late === 0;
      return {
        pass,
        figure: `p99 ${p99.toFixed(1)} ms with ${openDuring} open (${percentile(quiet.ms, 99).toFixed(1)} ms without); ${closed} closed by the proxy, ${late} outlived ${seconds(limit)}`,
        details: [`failed normal requests: ${loaded.failed.length}${loaded.failed.length > 0 ? ` (${loaded.failed.slice(0, 3).join('; ')})` : ''}`, `connect failures: ${attack.failedToConnect}`],
      };
    } finally {
      attack.close();
    }
  },
};

export const silent: Probe = {
  name: 'silent-connections',
  finding: '1',
  goal: '500 connections that send nothing are all closed by the proxy within the idle/headers timeout',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url });
    const limit = Math.max(ctx.limits.idleMs, ctx.limits.headersMs) + ctx.limits.slackMs;
    const attack = new Trickle({ port: proxy.port, count: 500, prefix: '', drip: '', gapMs: 0 });
    try {
      await attack.start();
      await within(limit, () => attack.open === 0);
      const late = overdue(attack, limit);
      const closed = attack.closedByPeer.length;
      const { closed: lifetimes } = attack.lifetimes();
      return {
        pass: closed === 500 && late === 0,
        figure: `${closed} of 500 closed by the proxy${lifetimes.length > 0 ? ` (slowest after ${seconds(Math.max(...lifetimes))})` : ''}, ${attack.open} still open after ${seconds(limit)}`,
      };
    } finally {
      attack.close();
    }
  },
};

export const slowUploads: Probe = {
  name: 'slow-uploads',
  finding: '1',
  goal: '300 uploads sending a body byte more rarely than CLIENT_BODY_TIMEOUT_MS: each answered 408 (or closed) in time, and the upstream connections they held released',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url });
    const gapMs = Math.max(5000, ctx.limits.bodyMs + 2000);
    const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${AUTH}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`;
    const attack = new Trickle({ port: proxy.port, count: 300, prefix: head, drip: 'a', gapMs });
    let upstreamPeak = 0;
    const watch = setInterval(() => { upstreamPeak = Math.max(upstreamPeak, upstream.openSockets()); }, 50);
    try {
      await attack.start();
      const limit = ctx.limits.bodyMs + ctx.limits.slackMs;
      await within(limit, () => attack.conns.every((c) => c.answer !== '' || c.closedByPeerAt !== null));
      const answered408 = attack.conns.filter((c) => c.answer.startsWith('HTTP/1.1 408')).length;
      const dealt = attack.conns.filter((c) => c.answer !== '' || c.closedByPeerAt !== null).length;
      // Released upstream: every upstream request aborted, and no connection left toward upstream
      // once undici's idle keep-alive timeout (4 s) has passed: after an abort undici may open a
      // fresh connection to the origin, which carries no request and closes when idle.
      await within(2000, () => upstream.aborted >= 300);
      await within(6000, () => upstream.openSockets() <= 10);
      const held = upstream.openSockets();
      return {
        pass: dealt === 300 && answered408 === 300 && upstream.aborted >= 300 && held <= 10,
        figure: `${answered408} answered 408, ${dealt} of 300 answered or closed within ${seconds(limit)}; upstream requests aborted ${upstream.aborted}; upstream sockets peak ${upstreamPeak}, ${held} still open 6 s later`,
        details: [`a body byte every ${seconds(gapMs)}; answers seen: ${[...new Set(attack.conns.map((c) => c.answer.split('\r\n')[0] ?? '').filter((a) => a !== ''))].join(' | ') || 'none'}`],
      };
    } finally {
      clearInterval(watch);
      attack.close();
    }
  },
};

export const fdLimit: Probe = {
  name: 'fd-limit',
  finding: '1',
  goal: 'proxy under `ulimit -n 1024` with MAX_CLIENT_CONNECTIONS=900: 1,100 idle connections do not stop 20 real requests from succeeding once the idle timeout has passed',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url, fdLimit: 1024, env: { MAX_CLIENT_CONNECTIONS: '900' } });
    const attack = new Trickle({ port: proxy.port, count: 1100, prefix: '', drip: '', gapMs: 0 });
    try {
      const t0 = performance.now();
      await attack.start();
      const refusedAtOnce = attack.conns.filter((c) => c.closedByPeerAt !== null && c.closedByPeerAt - c.connectedAt < 1000).length;
      const limit = Math.max(ctx.limits.idleMs, ctx.limits.headersMs) + ctx.limits.slackMs;
      // Real clients retry: one attempt per 250 ms until 20 in a row succeed, for as long as the limit allows.
      let streak = 0;
      let attempts = 0;
      let servedAt = -1;
      await within(limit + 5000, async () => {
        attempts++;
        const r = await exchange(proxy.url, false, { path: '/v1/chat/completions', headers: { authorization: AUTH, 'content-type': 'application/json' }, body: CHAT, timeoutMs: 2000 });
        streak = r.status === 200 && r.error === null ? streak + 1 : 0;
        if (streak === 20) servedAt = performance.now() - t0;
        return streak >= 20;
      });
      const alive = proxy.child.exitCode === null;
      return {
        pass: servedAt >= 0 && alive,
        figure: servedAt >= 0
          ? `20 requests in a row served ${seconds(servedAt)} after the attack began; ${refusedAtOnce} connections refused at once; ${attack.open} attacker connections still open`
          : `no run of 20 successful requests within ${seconds(limit + 5000)} (${attempts} attempts); of 1,100 attacker connections ${attack.open} open, ${attack.closedByPeer.length} closed by the proxy (${refusedAtOnce} at once)${alive ? '' : '; the proxy died'}`,
      };
    } finally {
      attack.close();
    }
  },
};
