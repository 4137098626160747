// The soak's mixed traffic, each kind on its own timer with a cap on what it has in flight, so
// the load is bounded in rate and count whatever the proxy does: JSON chat, SSE streams,
// multipart uploads, Realtime WebSocket sessions, clients leaving mid-stream, upstream faults.
// Every exchange the proxy answered is tallied by its x-proxy-request-id, to find its record later.
import { once } from 'node:events';
import http from 'node:http';
import { WebSocket } from 'ws';
import { exchange, PROXY_ID_HEADER, type ExchangeRequest, type ExchangeResult } from './client.ts';
import { CHAT_REQUEST } from './payloads.ts';

const MiB = 1024 * 1024;
const AUTH = { authorization: 'Bearer sk-soak-0000000000000000000000000001', 'content-type': 'application/json' };
const CHAT = Buffer.from(JSON.stringify(CHAT_REQUEST));
const STREAM = Buffer.from(JSON.stringify({ ...CHAT_REQUEST, stream: true, stream_options: { include_usage: true } }));
const BOUNDARY = 'soak-boundary-7d1c';

function multipart(fileBytes: number): Buffer {
  const file = Buffer.alloc(fileBytes, 0x52); // not silence, but the proxy does not care
  return Buffer.concat([
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n`),
    Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="soak.wav"\r\nContent-Type: audio/wav\r\n\r\n`),
    file,
    Buffer.from(`\r\n--${BOUNDARY}--\r\n`),
  ]);
}

export interface KindSettings {
  /** One start every `everyMs`... */
  everyMs: number;
  /** ...unless this many of the kind are still in flight (then the tick is skipped and counted). */
  maxInFlight: number;
}

export const SOAK_MIX: Readonly<Record<Kind, KindSettings>> = {
  json: { everyMs: 100, maxInFlight: 8 },
  sse: { everyMs: 500, maxInFlight: 8 },
  upload: { everyMs: 5000, maxInFlight: 2 },
  websocket: { everyMs: 2000, maxInFlight: 4 },
  abort: { everyMs: 3000, maxInFlight: 2 },
  fault: { everyMs: 1000, maxInFlight: 6 },
};
export const UPLOAD_BYTES = 3 * MiB;

export type Kind = 'json' | 'sse' | 'upload' | 'websocket' | 'abort' | 'fault';

/** What a client saw; `id` null means the proxy never answered (no response head). */
interface Outcome {
  id: string | null;
  problem: string | null;
  ms: number;
}

export class Tally {
  /** Request ids of the exchanges the proxy answered: each must have a record. */
  readonly ids = new Set<string>();
  readonly byKind = new Map<Kind, number>();
  readonly skipped = new Map<Kind, number>();
  readonly problems = new Map<string, number>();
  /** JSON latencies since the last take(), for a per-window p99. */
  private jsonMs: number[] = [];

  add(kind: Kind, outcome: Outcome): void {
    if (outcome.id !== null) this.ids.add(outcome.id);
    this.byKind.set(kind, (this.byKind.get(kind) ?? 0) + 1);
    if (outcome.problem !== null) {
      const key = `${kind}: ${outcome.problem}`;
      this.problems.set(key, (this.problems.get(key) ?? 0) + 1);
    }
    if (kind === 'json' && outcome.problem === null) this.jsonMs.push(outcome.ms);
  }

  skip(kind: Kind): void {
    this.skipped.set(kind, (this.skipped.get(kind) ?? 0) + 1);
  }

  takeJsonLatencies(): number[] {
    const taken = this.jsonMs;
    this.jsonMs = [];
    return taken;
  }

  get errors(): number {
    let n = 0;
    for (const count of this.problems.values()) n += count;
    return n;
  }
}

function expectStatus(result: ExchangeResult, status: number, check?: (body: string) => boolean): Outcome {
  let problem: string | null = null;
  if (result.status === 0) problem = `no response (${result.error ?? 'closed'})`;
  else if (result.status !== status) problem = `status ${result.status}, expected ${status}`;
  else if (result.error !== null) problem = result.error;
  else if (check !== undefined && !check(result.body.toString('utf8'))) problem = 'unexpected body';
  else if (result.id === null) problem = `no ${PROXY_ID_HEADER}`;
  return { id: result.id, problem, ms: result.ms };
}

const FAULTS: { headers: Record<string, string>; judge: (r: ExchangeResult) => Outcome }[] = [
  { headers: { 'x-test-reset': 'before-headers' }, judge: (r) => expectStatus(r, 502) },
  { headers: { 'x-test-status': '500' }, judge: (r) => expectStatus(r, 500) },
  { headers: { 'x-test-status': '503' }, judge: (r) => expectStatus(r, 503) },
  { headers: { 'x-test-delay-ms': '2500' }, judge: (r) => expectStatus(r, 200) },
  {
    // The head arrives, then upstream resets: the client must see the body cut short.
    headers: { 'x-test-reset': 'mid-body' },
    judge: (r) => ({ id: r.id, ms: r.ms, problem: r.status === 200 && r.error !== null ? null : `status ${r.status}, error ${r.error ?? 'none'} (expected a cut 200)` }),
  },
];

export class SoakTraffic {
  readonly tally = new Tally();
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly inFlight = new Map<Kind, number>();
  private readonly pending = new Set<Promise<void>>();
  private readonly upload = multipart(UPLOAD_BYTES);
  private faultTurn = 0;

  constructor(private readonly baseUrl: string) {}

  start(): void {
    for (const kind of Object.keys(SOAK_MIX) as Kind[]) {
      this.timers.push(setInterval(() => this.tick(kind), SOAK_MIX[kind].everyMs));
    }
  }

  private tick(kind: Kind): void {
    const busy = this.inFlight.get(kind) ?? 0;
    if (busy >= SOAK_MIX[kind].maxInFlight) return this.tally.skip(kind);
    this.inFlight.set(kind, busy + 1);
    const run = this.run(kind)
      .catch((err: unknown) => ({ id: null, problem: `driver error: ${String(err)}`, ms: 0 }))
      .then((outcome) => {
        this.tally.add(kind, outcome);
        this.inFlight.set(kind, (this.inFlight.get(kind) ?? 1) - 1);
        this.pending.delete(run);
      });
    this.pending.add(run);
  }

  private send(request: ExchangeRequest): Promise<ExchangeResult> {
    return exchange(this.baseUrl, this.agent, request);
  }

  private async run(kind: Kind): Promise<Outcome> {
    switch (kind) {
      case 'json':
        return expectStatus(await this.send({ path: '/v1/chat/completions', headers: AUTH, body: CHAT }), 200, (b) => b.includes('"chat.completion"'));
      case 'sse': {
        const headers = { ...AUTH, 'x-test-chunks': '20', 'x-test-chunk-delay-ms': '50' };
        return expectStatus(await this.send({ path: '/v1/chat/completions', headers, body: STREAM }), 200, (b) => b.trimEnd().endsWith('data: [DONE]'));
      }
      case 'upload': {
        const headers = { authorization: AUTH.authorization, 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
        const result = await this.send({ path: '/v1/audio/transcriptions', headers, body: this.upload });
        return expectStatus(result, 200, (b) => b.includes(`transcribed ${UPLOAD_BYTES} bytes`));
      }
      case 'abort': {
        // A long stream the client leaves after its first event.
        const headers = { ...AUTH, 'x-test-chunks': '100', 'x-test-chunk-delay-ms': '100' };
        const result = await this.send({ path: '/v1/chat/completions', headers, body: STREAM, abortAfterBytes: 1 });
        return { id: result.id, ms: result.ms, problem: result.aborted ? null : `not aborted: status ${result.status}, ${result.error ?? 'completed'}` };
      }
      case 'fault': {
        const fault = FAULTS[this.faultTurn++ % FAULTS.length];
        if (fault === undefined) throw new Error('no fault');
        return fault.judge(await this.send({ path: '/v1/chat/completions', headers: { ...AUTH, ...fault.headers }, body: CHAT }));
      }
      case 'websocket':
        return this.realtime();
    }
  }

  /** A Realtime-like session: session.update, response.create answered by response.done, a clean close. */
  private async realtime(): Promise<Outcome> {
    const t0 = performance.now();
    const ws = new WebSocket(`${this.baseUrl.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime'], {
      headers: { authorization: AUTH.authorization },
      handshakeTimeout: 10_000,
    });
    let id: string | null = null;
    ws.once('upgrade', (res) => {
      const header = res.headers[PROXY_ID_HEADER];
      id = typeof header === 'string' ? header : null;
    });
    let refused = 0;
    ws.once('unexpected-response', (_req, res) => {
      const header = res.headers[PROXY_ID_HEADER];
      id = typeof header === 'string' ? header : null;
      refused = res.statusCode ?? 0;
      res.resume();
      ws.terminate(); // handshake refused: ends as an 'error' then 'close'
    });
    const closed = new Promise<number>((resolve) => ws.once('close', (code: number) => resolve(code)));
    try {
      const done = new Promise<void>((resolve, reject) => {
        ws.on('message', (data: Buffer) => {
          if (data.toString('utf8').includes('"response.done"')) resolve();
        });
        ws.once('error', reject);
        ws.once('close', () => reject(new Error('closed before response.done')));
      });
      done.catch(() => undefined); // awaited below; an error before 'open' must not go unhandled meanwhile
      await once(ws, 'open');
      ws.send(JSON.stringify({ type: 'session.update', session: { instructions: 'Answer briefly.', voice: 'alloy' } }));
      ws.send(JSON.stringify({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello' }] } }));
      ws.send(JSON.stringify({ type: 'response.create' }));
      const timeout = setTimeout(() => ws.terminate(), 10_000);
      try {
        await done;
      } finally {
        clearTimeout(timeout);
      }
      ws.close(1000);
      const code = await closed;
      return { id, ms: performance.now() - t0, problem: code === 1000 ? null : `closed ${code}` };
    } catch (err) {
      ws.terminate();
      const message = refused > 0 ? `handshake refused with ${refused}` : err instanceof Error ? err.message : String(err);
      return { id, ms: performance.now() - t0, problem: message };
    }
  }

  /** Stops starting exchanges and waits (at most `maxMs`) for those in flight. */
  async stop(maxMs = 30_000): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(this.pending), new Promise((resolve) => { timer = setTimeout(resolve, maxMs); })]);
    clearTimeout(timer);
    this.agent.destroy();
  }
}
