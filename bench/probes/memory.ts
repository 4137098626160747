// Findings 2, 3 and 6: what a message, a stalled upload or a burst makes the proxy hold.
import http from 'node:http';
import net from 'node:net';
import { WebSocket } from 'ws';
import { exchange } from '../lib/client.ts';
import { field, journalIds, journalLines, parseRecord, recordId } from '../lib/journal-records.ts';
import { watchPeakRss } from '../lib/proc-stats.ts';
import { healthz } from '../lib/scrape.ts';
import { startWsSink } from '../lib/ws-sink.ts';
import { AUTH, MiB, within, type Probe, type ProbeContext } from './context.ts';

const RSS_LIMIT_MIB = 400;

export const wsMessages: Probe = {
  name: 'ws-100mib-messages',
  finding: '2',
  goal: `four 100 MiB WebSocket messages at once: each session closed 1009 by the proxy (none reaches upstream), RSS < ${RSS_LIMIT_MIB} MiB`,
  async run(ctx: ProbeContext) {
    const sink = await startWsSink();
    try {
      const proxy = await ctx.startProxy({ upstreamUrl: sink.url });
      const rss = watchPeakRss(proxy.pid);
      const message = Buffer.alloc(100 * MiB, 0x61);
      const codes = await Promise.all(Array.from({ length: 4 }, () => new Promise<number>((resolve) => {
        const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime'], { headers: { authorization: AUTH } });
        const timer = setTimeout(() => ws.terminate(), 30_000);
        ws.once('open', () => ws.send(message, { binary: true }));
        ws.once('error', () => undefined); // the close code tells
        ws.once('close', (code: number) => {
          clearTimeout(timer);
          resolve(code);
        });
      })));
      const { startMiB, peakMiB } = rss.stop();
      const closed1009 = codes.filter((code) => code === 1009).length;
      return {
        pass: closed1009 === 4 && sink.oversized === 0 && peakMiB < RSS_LIMIT_MIB,
        figure: `close codes ${codes.join(', ')}; ${sink.oversized} reached upstream; RSS ${startMiB.toFixed(0)} → peak ${peakMiB.toFixed(0)} MiB`,
      };
    } finally {
      await sink.close();
    }
  },
};

export const injectBuffers: Probe = {
  name: 'inject-stalled-8mib',
  finding: '3',
  goal: `STREAM_USAGE=inject, 100 clients each send 8 MiB of a streamed chat request and stall: RSS < ${RSS_LIMIT_MIB} MiB`,
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url, env: { STREAM_USAGE: 'inject' } });
    const prefix = '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"';
    const body = Buffer.alloc(8 * MiB, 0x61);
    body.write(prefix);
    const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${AUTH}\r\nContent-Type: application/json\r\nContent-Length: ${body.length + 1024}\r\n\r\n`;
    const rss = watchPeakRss(proxy.pid);
    const sockets: net.Socket[] = [];
    const answers: string[] = [];
    let flushed = 0;
    try {
      for (let i = 0; i < 100; i++) {
        const socket = net.connect(proxy.port, '127.0.0.1');
        sockets.push(socket);
        socket.on('error', () => undefined);
        socket.once('data', (chunk: Buffer) => answers.push(chunk.toString('latin1', 0, 12)));
        socket.write(head);
        socket.write(body, () => flushed++);
      }
      // Until every body left the client, every client has an answer, or the proxy stopped reading.
      await within(20_000, () => flushed + answers.length >= 100);
      await new Promise((resolve) => setTimeout(resolve, 2000)); // hold the stall a little
      const { startMiB, peakMiB } = rss.stop();
      const refused = answers.filter((a) => a.startsWith('HTTP/1.1 503')).length;
      return {
        pass: peakMiB < RSS_LIMIT_MIB,
        figure: `RSS ${startMiB.toFixed(0)} → peak ${peakMiB.toFixed(0)} MiB; ${flushed} of 100 bodies taken whole, ${refused} refused 503, ${answers.length - refused} other answers; ${upstream.requests.length} upstream calls`,
      };
    } finally {
      rss.stop();
      for (const socket of sockets) socket.destroy();
    }
  },
};

export const burst1MiB: Probe = {
  name: 'records-300x1mib',
  finding: '6',
  goal: `300 concurrent 1 MiB chat requests: every one answered has its record (0 lost), RSS < ${RSS_LIMIT_MIB} MiB`,
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const forget = setInterval(() => { upstream.requests.length = 0; }, 200); // the emulator keeps bodies
    try {
      const proxy = await ctx.startProxy({ upstreamUrl: upstream.url });
      const content = 'x'.repeat(MiB - 200);
      const body = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] }));
      const agent = new http.Agent({ keepAlive: false, maxSockets: 300 });
      const rss = watchPeakRss(proxy.pid);
      const results = await Promise.all(Array.from({ length: 300 }, () =>
        exchange(proxy.url, agent, { path: '/v1/chat/completions', headers: { authorization: AUTH, 'content-type': 'application/json' }, body, timeoutMs: 60_000 })));
      agent.destroy();
      const ids = results.flatMap((r) => (r.id === null ? [] : [r.id]));
      await within(30_000, async () => (await proxy.journal.size()).records >= ids.length);
      await proxy.journal.settle(1000, 10_000);
      const { startMiB, peakMiB } = rss.stop();
      const written = await journalIds(proxy.auditDir);
      const lost = ids.filter((id) => !written.has(id)).length;
      const ok = results.filter((r) => r.status === 200 && r.error === null).length;
      const journal = field(await healthz(proxy.adminUrl), 'audit.journal.dropped');
      return {
        pass: lost === 0 && ok === 300 && peakMiB < RSS_LIMIT_MIB,
        figure: `${ok} of 300 answered 200; ${lost} records lost of ${ids.length} (journal's dropped count ${JSON.stringify(journal) ?? 'unknown'}); RSS ${startMiB.toFixed(0)} → peak ${peakMiB.toFixed(0)} MiB`,
      };
    } finally {
      clearInterval(forget);
    }
  },
};

export const controlBytes: Probe = {
  name: 'control-bytes-body',
  finding: '6',
  goal: 'a 1 MiB text body of control bytes is stored as omitted (with its hash), not as a multi-MB escaped line',
  async run(ctx: ProbeContext) {
    const upstream = await ctx.startUpstream();
    const proxy = await ctx.startProxy({ upstreamUrl: upstream.url });
    const body = Buffer.alloc(MiB);
    for (let i = 0; i < body.length; i++) body[i] = 1 + (i % 8);
    const r = await exchange(proxy.url, false, { path: '/v1/chat/completions', headers: { authorization: AUTH, 'content-type': 'text/plain; charset=utf-8' }, body });
    await within(10_000, async () => (await journalLines(proxy.auditDir)).some((line) => recordId(line) === r.id));
    const line = (await journalLines(proxy.auditDir)).find((l) => recordId(l) === r.id);
    const record = line === undefined ? null : parseRecord(line);
    const encoding = field(record, 'request.bodyEncoding');
    return {
      pass: line !== undefined && encoding === 'omitted' && Buffer.byteLength(line) < MiB,
      figure: line === undefined ? `no record (status ${r.status})` : `journal line ${(Buffer.byteLength(line) / MiB).toFixed(1)} MB, request.bodyEncoding ${String(encoding)}`,
    };
  },
};
