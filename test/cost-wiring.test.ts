/**
 * Cost wired end to end through the proxy and the upstream emulator: every record's
 * `openai.costUsd` against figures worked by hand from src/policy/prices.json; streams without
 * usage (no include_usage, or aborted by the client) estimated with the tokenizer and priced;
 * unknown models null and counted; the policy file's `prices:` overriding the shipped table;
 * the cost metrics; transcriptions billed by duration; Realtime sessions priced from their
 * summed usage, audio tokens included.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI, { toFile } from 'openai';
import { request } from 'undici';
import { WebSocket } from 'ws';
import type { AuditRecord } from '../src/audit/record/record.ts';
import { recordOf } from './support/audit.ts';
import { policyDir } from './support/policy.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

const HEADER = 'x-institution-id';
const POLICY = `version: 1
institutions:
  acme: {}
  beta: {}
institutionHeader:
  name: ${HEADER}
  trustedFrom: [ 127.0.0.1, "::ffff:127.0.0.1" ]
prices:
  ft:gpt-4o-mini:acme:2024: { input: 0.3, cachedInput: 0.15, output: 1.2 }
  gpt-4o: { input: 1, cachedInput: 0.5, output: 2 }
`;

const files = policyDir();
let upstream: Upstream;
let proxy: TestProxy;

before(async () => {
  upstream = await startUpstream();
  proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    POLICY_FILE: files.write('policy.yaml', POLICY),
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: join(files.dir, 'audit'),
    METRICS_ENABLED: 'true',
  });
});

after(async () => {
  await proxy.close();
  await upstream.close();
  files.remove();
});

interface Reply {
  status: number;
  id: string;
  text: string;
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  const res = await request(`${proxy.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test-cost', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, id: String(res.headers['x-proxy-request-id']), text: await res.body.text() };
}

const chat = (model: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  model,
  messages: [{ role: 'user', content: 'hi' }],
  ...extra,
});

async function recordFor(reply: Reply): Promise<AuditRecord> {
  assert.equal(reply.status, 200, reply.text);
  return recordOf(proxy, reply.id);
}

/** Amounts are rounded to 1e-10 USD by cost.ts; compare at that precision. */
function usd(actual: number | null | undefined, expected: number): void {
  assert.equal(typeof actual, 'number', `a cost, got ${String(actual)}`);
  assert.ok(Math.abs((actual as number) - expected) < 1e-12, `${String(actual)} ≠ ${expected}`);
}

async function metrics(): Promise<string> {
  return (await request(`${proxy.adminUrl}/metrics`)).body.text();
}

/** The sum of a metric's samples whose labels match every `labels` pair. */
function sample(text: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.lastIndexOf('}');
    const labelText = line.slice(name.length + 1, close);
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) sum += Number(line.slice(close + 1).trim());
  }
  return sum;
}

// The emulator reports the same usage for every chat completion: prompt 11 (cached 3),
// completion 7 (reasoning 2, part of the output).
describe('chat completions', () => {
  test('a chat completion is priced at the shipped table: the hand-worked figure', async () => {
    // gpt-4o-mini: input $0.15, cached input $0.075, output $0.60 per 1M tokens.
    // (11 − 3) × 0.15 + 3 × 0.075 + 7 × 0.60 = 1.2 + 0.225 + 4.2 = 5.625 per 1M → $0.000005625
    const record = await recordFor(await post('/v1/chat/completions', chat('gpt-4o-mini')));
    usd(record.openai?.costUsd, 0.000005625);
    assert.equal(record.openai?.usageEstimated, undefined, 'reported usage is not an estimate');
  });

  test('a dated snapshot is priced as its base model', async () => {
    const record = await recordFor(await post('/v1/chat/completions', chat('gpt-4o-mini-2024-07-18')));
    usd(record.openai?.costUsd, 0.000005625);
  });

  test('a streamed completion without include_usage: usage estimated with the tokenizer, and priced', async () => {
    const reply = await post('/v1/chat/completions', chat('gpt-4o-mini', { stream: true }));
    const record = await recordFor(reply);
    // Input, per OpenAI's cookbook: 3 per message + "user" (1) + "hi" (1) + 3 priming = 8.
    // Output: "Hello world from the emulator" is 5 o200k_base tokens.
    assert.deepEqual(record.openai?.usage, { inputTokens: 8, outputTokens: 5, totalTokens: 13, cachedTokens: null, reasoningTokens: null });
    assert.equal(record.openai?.usageEstimated, true);
    // 8 × 0.15 + 5 × 0.60 = 1.2 + 3.0 = 4.2 per 1M → $0.0000042
    usd(record.openai?.costUsd, 0.0000042);
  });

  test('a stream the client aborts before its usage chunk: estimated from what it got, and priced', async () => {
    // include_usage asked, but upstream waits a minute between chunks: the client leaves after the first.
    const controller = new AbortController();
    const res = await request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-test-cost', 'x-test-chunk-delay-ms': '60000' },
      body: JSON.stringify(chat('gpt-4o-mini', { stream: true, stream_options: { include_usage: true } })),
      signal: controller.signal,
    });
    const id = String(res.headers['x-proxy-request-id']);
    for await (const chunk of res.body) {
      assert.match(String(chunk), /chat\.completion\.chunk/);
      controller.abort();
      break;
    }
    const record = await recordOf(proxy, id);
    assert.equal(record.outcome, 'client_aborted');
    assert.equal(record.openai?.usageEstimated, true);
    // 8 input tokens as above, no output text yet: 8 × 0.15 per 1M → $0.0000012
    assert.equal(record.openai?.usage?.inputTokens, 8);
    usd(record.openai?.costUsd, 0.0000012);
    await upstream.waitForAborted(1);
  });

  test('an unknown model: costUsd null, counted in openai_proxy_cost_unknown_total', async () => {
    const before = sample(await metrics(), 'openai_proxy_cost_unknown_total', {});
    const record = await recordFor(await post('/v1/chat/completions', chat('acme-house-model')));
    assert.equal(record.openai?.costUsd, null);
    assert.ok('costUsd' in (record.openai ?? {}), 'the record says null, not nothing');
    assert.equal(sample(await metrics(), 'openai_proxy_cost_unknown_total', {}), before + 1);
  });

  test('an unpriced operation (models list) gets null and is not counted as unknown', async () => {
    const before = sample(await metrics(), 'openai_proxy_cost_unknown_total', {});
    const res = await request(`${proxy.url}/v1/models`, { headers: { authorization: 'Bearer sk-test-cost' } });
    await res.body.text();
    const record = await recordOf(proxy, String(res.headers['x-proxy-request-id']));
    assert.equal(record.openai?.costUsd, null);
    assert.equal(sample(await metrics(), 'openai_proxy_cost_unknown_total', {}), before);
  });
});

describe('the policy file\'s prices:', () => {
  test('an override replaces the shipped price (and its dated snapshots follow it)', async () => {
    // Shipped gpt-4o would be 8 × 2.5 + 3 × 1.25 + 7 × 10 = 93.75 per 1M; the policy says
    // input 1, cached 0.5, output 2: 8 × 1 + 3 × 0.5 + 7 × 2 = 8 + 1.5 + 14 = 23.5 per 1M → $0.0000235
    usd((await recordFor(await post('/v1/chat/completions', chat('gpt-4o')))).openai?.costUsd, 0.0000235);
    usd((await recordFor(await post('/v1/chat/completions', chat('gpt-4o-2024-08-06')))).openai?.costUsd, 0.0000235);
  });

  test('the contract\'s example entry prices a fine-tuned model', async () => {
    // 8 × 0.3 + 3 × 0.15 + 7 × 1.2 = 2.4 + 0.45 + 8.4 = 11.25 per 1M → $0.00001125
    usd((await recordFor(await post('/v1/chat/completions', chat('ft:gpt-4o-mini:acme:2024')))).openai?.costUsd, 0.00001125);
  });
});

describe('metrics', () => {
  test('openai_proxy_cost_usd_total{institution,model} sums the records\' costs', async () => {
    const labels = { institution: 'beta', model: 'gpt-4o-mini' };
    const before = sample(await metrics(), 'openai_proxy_cost_usd_total', labels);
    let sum = 0;
    for (let i = 0; i < 3; i++) {
      const record = await recordFor(await post('/v1/chat/completions', chat('gpt-4o-mini'), { [HEADER]: 'beta' }));
      assert.equal(record.institution, 'beta');
      sum += record.openai?.costUsd ?? Number.NaN;
    }
    usd(sum, 3 * 0.000005625);
    const after = sample(await metrics(), 'openai_proxy_cost_usd_total', labels);
    assert.ok(Math.abs(after - before - sum) < 1e-12, `${after} − ${before} ≠ ${sum}`);
  });
});

describe('audio and Realtime', () => {
  test('a transcription reporting its duration is priced per minute, and the record keeps the seconds', async () => {
    const client = new OpenAI({ apiKey: 'sk-test-cost', baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const { response } = await client.audio.transcriptions
      .create(
        { file: await toFile(Buffer.alloc(1000, 1), 'note.wav'), model: 'whisper-1' },
        { headers: { 'x-test-usage': JSON.stringify({ type: 'duration', seconds: 42 }) } },
      )
      .withResponse();
    const record = await recordOf(proxy, String(response.headers.get('x-proxy-request-id')));
    assert.equal(record.openai?.usage?.seconds, 42);
    // whisper-1: $0.006 per minute, by the second: 42 × 0.006 / 60 = $0.0042
    usd(record.openai?.costUsd, 0.0042);
  });

  test('a Realtime session is priced from its summed usage, audio tokens at their own rates', async () => {
    // Each response: 1000 input tokens = 300 text (100 cached) + 700 audio (100 cached), 200
    // cached in all; 500 output tokens = 100 text + 400 audio.
    const usage = {
      input_tokens: 1000,
      output_tokens: 500,
      total_tokens: 1500,
      input_token_details: { cached_tokens: 200, text_tokens: 300, audio_tokens: 700, cached_tokens_details: { text_tokens: 100, audio_tokens: 100 } },
      output_token_details: { text_tokens: 100, audio_tokens: 400 },
    };
    const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, ['realtime'], {
      headers: { authorization: 'Bearer sk-test-cost' },
    });
    const opened = once(ws, 'open');
    const [upgrade] = (await once(ws, 'upgrade')) as [{ headers: Record<string, string> }];
    await opened;
    let done = 0;
    const both = new Promise<void>((resolve) => {
      ws.on('message', (data) => {
        if (Buffer.from(data as Buffer).toString().includes('"response.done"') && ++done === 2) resolve();
      });
    });
    ws.send(JSON.stringify({ type: 'response.create', test_usage: usage }));
    ws.send(JSON.stringify({ type: 'response.create', test_usage: usage }));
    await both;
    ws.close();
    await once(ws, 'close');
    const record = await recordOf(proxy, String(upgrade.headers['x-proxy-request-id']));
    assert.equal(record.openai?.usage?.audioInputTokens, 1400);
    assert.equal(record.openai?.usage?.audioOutputTokens, 800);
    // gpt-realtime per 1M: text in $4 (cached $0.40), audio in $32 (cached $0.40), text out $16, audio out $64.
    // One response: 200 × 4 + 100 × 0.4 + 600 × 32 + 100 × 0.4 + 100 × 16 + 400 × 64
    //             = 800 + 40 + 19200 + 40 + 1600 + 25600 = 47280 per 1M → $0.04728; two: $0.09456
    usd(record.openai?.costUsd, 0.09456);
  });
});

describe('what is not billed', () => {
  test('an error answer costs 0 and is not counted as unknown', async () => {
    const before = sample(await metrics(), 'openai_proxy_cost_unknown_total', {});
    const reply = await post('/v1/chat/completions', chat('gpt-4o-mini'), { 'x-test-status': '429' });
    assert.equal(reply.status, 429);
    const record = await recordOf(proxy, reply.id);
    assert.equal(record.openai?.usage, null);
    assert.equal(record.openai?.costUsd, 0);
    assert.equal(sample(await metrics(), 'openai_proxy_cost_unknown_total', {}), before);
  });
});
