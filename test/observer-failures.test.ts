/**
 * A tap that throws at any stage never changes the response: for every observer (capture, metrics,
 * tracing) and every stage of its tap (start, upstreamRequest, requestChunk, responseHead,
 * responseChunk, message, end), and for every consumer of the capture's facts (audit, metrics,
 * tracing) at the facts delivery, and the capture itself failing to read the facts, the client gets
 * the same bytes as in a clean run, and the failure is counted in
 * openai_proxy_observer_failures_total{stage}. The audit recorder is no observer of its own: the
 * facts are its only stage.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { BodyCapture } from '../src/capture/body-capture.ts';
import type { FactsConsumer } from '../src/capture/capture-observer.ts';
import type { Exchange, Observer, Tap } from '../src/proxy/observer.ts';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

type TapStage = 'start' | 'upstreamRequest' | 'requestChunk' | 'responseHead' | 'responseChunk' | 'message' | 'end';
const HTTP_STAGES: TapStage[] = ['start', 'upstreamRequest', 'requestChunk', 'responseHead', 'responseChunk', 'end'];

let upstream: Upstream;
let receiver: OtlpReceiver;
let proxy: TestProxy;
let dir: string;

before(async () => {
  upstream = await startUpstream();
  receiver = await startOtlpReceiver();
  dir = mkdtempSync(join(tmpdir(), 'observer-failures-'));
  proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: dir,
    METRICS_ENABLED: 'true',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '20',
  });
});

after(async () => {
  await proxy.close();
  await receiver.close();
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

const BODY = JSON.stringify({ model: 'text-embedding-3-small', input: ['one', 'two'] });

/** What the client receives of an embeddings call (the emulator's answer is deterministic). */
async function httpExchange(): Promise<string> {
  const res = await request(`${proxy.url}/v1/embeddings`, {
    method: 'POST',
    headers: { authorization: 'Bearer sk-failures-test', 'content-type': 'application/json', 'accept-encoding': 'identity' },
    body: BODY,
  });
  return `${res.statusCode} ${String(res.headers['content-type'])} ${await res.body.text()}`;
}

/** What the client receives of a Realtime session: one echoed event, its random id left out. */
async function webSocketExchange(): Promise<string> {
  const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, { headers: { authorization: 'Bearer sk-failures-test' } });
  const received: string[] = [];
  const echoed = new Promise<void>((resolve, reject) => {
    ws.on('message', (data: Buffer) => {
      const { event_id: _id, ...event } = JSON.parse(data.toString('utf8')) as Record<string, unknown> & { session?: { id?: string } };
      if (event.session !== undefined) delete event.session.id;
      received.push(JSON.stringify(event));
      if (event.type === 'echo') resolve();
    });
    ws.once('error', reject);
  });
  await once(ws, 'open');
  ws.send(JSON.stringify({ type: 'hello', n: 1 }));
  await echoed;
  ws.close(1000, 'done');
  await once(ws, 'close');
  return received.join('\n');
}

async function failures(stage: string): Promise<number> {
  const { body } = (await proxy.runtime.metrics?.render(false)) ?? { body: '' };
  const line = body.split('\n').find((l) => l.startsWith(`openai_proxy_observer_failures_total{stage="${stage}"}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

/** Resolves once the capture has handed the next `count` embeddings calls' facts to every consumer (this one is last). */
function factsDelivered(count: number): Promise<void> {
  return new Promise((resolve) => {
    let left = count;
    const spy: FactsConsumer = {
      facts: (exchange) => {
        if (exchange.path === '/v1/embeddings' && --left === 0) {
          spy.facts = () => undefined;
          resolve();
        }
      },
    };
    proxy.runtime.capture?.consume(spy);
  });
}

class Injected extends Error {
  constructor(where: string) {
    super(`injected failure: ${where}`);
  }
}

/** Makes `observer`'s taps throw at `stage` (after doing their work), until the returned undo. */
function breakTap(observer: Observer, stage: TapStage): () => void {
  const own = Object.getOwnPropertyDescriptor(observer, 'start');
  const start = observer.start.bind(observer);
  observer.start = (exchange: Exchange): Tap | undefined => {
    if (stage === 'start') throw new Injected('start');
    const tap = start(exchange) ?? {};
    const broken = Object.create(tap) as Tap & Record<string, unknown>;
    const original = (tap as Record<string, unknown>)[stage] as ((...args: unknown[]) => void) | undefined;
    broken[stage] = (...args: unknown[]): void => {
      original?.apply(tap, args);
      throw new Injected(stage);
    };
    return broken;
  };
  return () => {
    if (own !== undefined) Object.defineProperty(observer, 'start', own);
    else delete (observer as Partial<Observer>).start;
  };
}

function breakConsumer(consumer: FactsConsumer): () => void {
  const own = Object.getOwnPropertyDescriptor(consumer, 'facts');
  const facts = consumer.facts.bind(consumer);
  consumer.facts = (...args) => {
    facts(...args);
    throw new Injected('facts');
  };
  return () => {
    if (own !== undefined) Object.defineProperty(consumer, 'facts', own);
    else delete (consumer as Partial<FactsConsumer>).facts;
  };
}

function observers(): Array<[string, Observer]> {
  const { capture, metrics, tracing } = proxy.runtime;
  assert.ok(capture !== null && metrics !== null && tracing !== null);
  return [['capture', capture], ['metrics', metrics.observer], ['tracing', tracing.observer]];
}

test('a tap that throws at any stage leaves the response as it was, and is counted', async () => {
  const cleanHttp = await httpExchange();
  const cleanWs = await webSocketExchange();
  assert.match(cleanHttp, /^200 application\/json \{"object":"list"/);
  for (const [name, observer] of observers()) {
    for (const stage of [...HTTP_STAGES, 'message' as const]) {
      const before = await failures(stage);
      const undo = breakTap(observer, stage);
      try {
        if (stage === 'message') assert.equal(await webSocketExchange(), cleanWs, `${name} ${stage}: the client's messages`);
        else assert.equal(await httpExchange(), cleanHttp, `${name} ${stage}: the client's response`);
      } finally {
        undo();
      }
      // Every tap stage runs inside the exchange, before the client has its answer.
      assert.ok((await failures(stage)) > before, `${name} ${stage}: counted`);
    }
  }
});

/** A clean run, once every earlier exchange's facts have been handed on. */
async function cleanRun(): Promise<string> {
  const settled = factsDelivered(1);
  const clean = await httpExchange();
  await settled;
  return clean;
}

test("a consumer that throws on an exchange's facts leaves the response as it was, the other consumers get them, and it is counted", async () => {
  const clean = await cleanRun();
  const { recorder, metrics, tracing, journal } = proxy.runtime;
  assert.ok(recorder !== null && metrics !== null && tracing !== null && journal !== null);
  for (const [name, consumer] of [['audit', recorder], ['metrics', metrics], ['tracing', tracing]] as Array<[string, FactsConsumer]>) {
    const before = await failures('facts');
    const appended: number = journal.stats.appended;
    const spans = receiver.spans.length;
    const delivered = factsDelivered(1);
    const undo = breakConsumer(consumer);
    try {
      assert.equal(await httpExchange(), clean, `${name} facts: the client's response`);
      await delivered;
    } finally {
      undo();
    }
    assert.equal(await failures('facts'), before + 1, `${name} facts: counted`);
    // The consumers after the one that threw still had the facts (the record, the ended spans).
    assert.equal(journal.stats.appended, appended + 1, `${name} facts: the record was still appended`);
    await receiver.waitForSpans(() => true, 10_000, spans + 2);
  }
});

test('a capture that cannot read the facts leaves the response as it was; the consumers still get what the core knows', async () => {
  const clean = await cleanRun();
  const before = await failures('capture');
  const finish = Object.getOwnPropertyDescriptor(BodyCapture.prototype, 'finish');
  assert.ok(finish !== undefined);
  const delivered = factsDelivered(1);
  BodyCapture.prototype.finish = () => Promise.reject(new Injected('capture'));
  try {
    assert.equal(await httpExchange(), clean);
    await delivered;
  } finally {
    Object.defineProperty(BodyCapture.prototype, 'finish', finish);
  }
  assert.equal(await failures('capture'), before + 1);
});
