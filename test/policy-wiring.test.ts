/**
 * POLICY_FILE wired into the running proxy, end to end through the upstream emulator: every
 * identity path (virtual key in Authorization, api-key and the Realtime subprotocol, mapped key,
 * INSTITUTIONS_FILE key, trusted and untrusted header, a spoofed header, disabled and unknown
 * proxy keys, required institution); upstream sees the real key and never the virtual one; the
 * client, the records, the spans and the metrics never see the real key; reloads good and bad;
 * a bad file at start exits 2.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { request } from 'undici';
import { WebSocket } from 'ws';
import { fingerprint } from '../src/audit/record/identity.ts';
import { newVirtualKey } from '../src/policy/virtual-key-format.ts';
import { recordOf } from './support/audit.ts';
import { until } from './support/net.ts';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.ts';
import { policyDir } from './support/policy.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

const ACME_VIRTUAL = newVirtualKey();
const REVOKED_VIRTUAL = newVirtualKey();
const UNKNOWN_VIRTUAL = newVirtualKey();
const ACME_REAL = `sk-real-acme-${randomBytes(12).toString('hex')}`;
const BETA_KEY = `sk-beta-own-${randomBytes(12).toString('hex')}`;
const LEGACY_KEY = `sk-legacy-${randomBytes(12).toString('hex')}`;
const UNMAPPED_KEY = `sk-unmapped-${randomBytes(12).toString('hex')}`;
const HEADER = 'x-billing-unit';
const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user' as const, content: 'hi' }] };

function mainPolicy(): string {
  return `version: 1
virtualKeys:
  - { fingerprint: ${fingerprint(ACME_VIRTUAL)}, institution: acme, upstreamKey: { env: OPENAI_API_KEY_ACME } }
  - { fingerprint: ${fingerprint(REVOKED_VIRTUAL)}, institution: acme, upstreamKey: { env: OPENAI_API_KEY_ACME }, disabled: true }
institutions:
  acme: {}
  beta: { keys: [ ${fingerprint(BETA_KEY)} ] }
institutionHeader:
  name: ${HEADER}
  trustedFrom: [ 127.0.0.1, "::ffff:127.0.0.1" ]
`;
}

// Everything the proxies log (one JSON line per event on stderr) is kept to be searched for keys.
let logged = '';
const stderrWrite = process.stderr.write.bind(process.stderr);
process.stderr.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
  logged += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
  return stderrWrite(chunk, ...rest);
});

const files = policyDir();
let upstream: Upstream;
let receiver: OtlpReceiver;
let proxy: TestProxy;
let strict: TestProxy;

before(async () => {
  upstream = await startUpstream();
  receiver = await startOtlpReceiver();
  const legacy = files.write('institutions.json', JSON.stringify({ [fingerprint(LEGACY_KEY)]: 'legacy-faculty' }));
  proxy = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    POLICY_FILE: files.write('policy.yaml', mainPolicy()),
    OPENAI_API_KEY_ACME: ACME_REAL,
    INSTITUTIONS_FILE: legacy,
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: join(files.dir, 'audit'),
    METRICS_ENABLED: 'true',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    OTEL_BSP_SCHEDULE_DELAY: '20',
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT: 'true',
  });
  // The header is believed from no one here (10.0.0.0/8 is not this test's loopback peer), and an institution is required.
  strict = await startTestProxy({
    UPSTREAM_URL: upstream.url,
    POLICY_FILE: files.write(
      'strict.json',
      JSON.stringify({
        version: 1,
        institutions: { beta: { keys: [fingerprint(BETA_KEY)] } },
        institutionHeader: { name: HEADER, trustedFrom: ['10.0.0.0/8'] },
        requireInstitution: true,
      }),
    ),
    AUDIT_ENABLED: 'true',
    AUDIT_DIR: join(files.dir, 'audit-strict'),
  });
});

after(async () => {
  await proxy.close();
  await strict.close();
  await receiver.close();
  await upstream.close();
  files.remove();
});

interface Reply {
  id: string;
  status: number;
  text: string;
  headers: Record<string, string | string[] | undefined>;
}

async function post(target: TestProxy, headers: Record<string, string>, body: unknown = CHAT): Promise<Reply> {
  const res = await request(`${target.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
  return { id: String(res.headers['x-proxy-request-id']), status: res.statusCode, text: await res.body.text(), headers: res.headers };
}

/** What upstream received for the request that went out last. */
function lastUpstream(): { raw: string; headers: Record<string, string | string[] | undefined> } {
  const last = upstream.requests.at(-1);
  assert.ok(last !== undefined, 'upstream received a request');
  return { raw: last.rawHeaders.join('\n'), headers: last.headers };
}

function journalText(dir: string): string {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ndjson'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('');
}

function assertClientNeverSeesRealKey(reply: Reply): void {
  assert.ok(!JSON.stringify(reply.headers).includes(ACME_REAL), 'no real key in the response headers');
  assert.ok(!reply.text.includes(ACME_REAL), 'no real key in the response body');
}

function wsUrl(base: string, path: string): string {
  return base.replace(/^http/, 'ws') + path;
}

describe('virtual keys: upstream gets the real key, nobody else does', () => {
  test('in Authorization, through the official SDK', async () => {
    const client = new OpenAI({ apiKey: ACME_VIRTUAL, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
    const { data, response } = await client.chat.completions.create(CHAT).withResponse();
    assert.equal(data.object, 'chat.completion');
    const { raw, headers } = lastUpstream();
    assert.equal(headers.authorization, `Bearer ${ACME_REAL}`);
    assert.ok(!raw.includes(ACME_VIRTUAL), 'the virtual key never reaches upstream');
    const id = response.headers.get('x-proxy-request-id') as string;
    const record = await recordOf(proxy, id);
    assert.equal(record.institution, 'acme');
    assert.equal(record.institutionSource, 'virtual_key');
    assert.equal(record.apiKey?.fingerprint, fingerprint(ACME_VIRTUAL), 'the record fingerprints the key the client sent');
    assert.equal(record.outcome, 'ok');
  });

  test('in api-key (Azure style), with the response checked for the real key', async () => {
    const reply = await post(proxy, { 'api-key': ACME_VIRTUAL });
    assert.equal(reply.status, 200);
    assertClientNeverSeesRealKey(reply);
    const { raw, headers } = lastUpstream();
    assert.equal(headers['api-key'], ACME_REAL);
    assert.ok(!raw.includes(ACME_VIRTUAL));
    const record = await recordOf(proxy, reply.id);
    assert.equal(record.institution, 'acme');
    assert.equal(record.institutionSource, 'virtual_key');
    assert.equal(record.apiKey?.fingerprint, fingerprint(ACME_VIRTUAL));
  });

  test('in the Realtime subprotocol (prefix in any case), upstream confirming the key entry: the client is confirmed its own entry', async () => {
    const entry = `OpenAI-Insecure-API-Key.${ACME_VIRTUAL}`;
    // A server that takes the prefix in any case (the emulator's default takes only the lower-case one).
    const ws = new WebSocket(wsUrl(proxy.url, '/v1/realtime?model=gpt-realtime'), ['realtime', entry], { headers: { 'x-test-pick-protocol': 'key' } });
    await once(ws, 'open');
    assert.equal(ws.protocol, entry, 'confirmed the entry the client sent');
    assert.equal(upstream.wsSessions.at(-1)?.protocol, `OpenAI-Insecure-API-Key.${ACME_REAL}`, 'upstream confirmed the swapped entry');
    const session = upstream.wsSessions.at(-1);
    const offered = String(session?.headers['sec-websocket-protocol']);
    assert.ok(offered.includes(`OpenAI-Insecure-API-Key.${ACME_REAL}`), offered);
    assert.ok(!JSON.stringify(session?.headers).includes(ACME_VIRTUAL), 'the virtual key never reaches upstream');
    ws.close();
    await once(ws, 'close');
  });

  test('in the Realtime subprotocol, upstream choosing realtime: swapped upstream, the session recorded as acme\'s', async () => {
    const entry = `openai-insecure-api-key.${ACME_VIRTUAL}`;
    const ws = new WebSocket(wsUrl(proxy.url, '/v1/realtime?model=gpt-realtime'), ['realtime', entry]);
    const upgraded = once(ws, 'upgrade') as Promise<[import('node:http').IncomingMessage]>;
    await once(ws, 'open');
    const [upgrade] = await upgraded;
    assert.equal(ws.protocol, 'realtime');
    assert.ok(String(upstream.wsSessions.at(-1)?.headers['sec-websocket-protocol']).includes(`openai-insecure-api-key.${ACME_REAL}`));
    assert.ok(!JSON.stringify(upgrade.headers).includes(ACME_REAL), 'no real key in the handshake response');
    const id = String(upgrade.headers['x-proxy-request-id']);
    ws.close();
    await once(ws, 'close');
    const record = await recordOf(proxy, id);
    assert.equal(record.institution, 'acme');
    assert.equal(record.institutionSource, 'virtual_key');
    assert.equal(record.apiKey?.fingerprint, fingerprint(ACME_VIRTUAL));
  });
});

describe('keys and the institution header', () => {
  test('a client-held key an institution lists: forwarded as it is, billed to that institution', async () => {
    const reply = await post(proxy, { authorization: `Bearer ${BETA_KEY}` });
    assert.equal(reply.status, 200);
    assert.equal(lastUpstream().headers.authorization, `Bearer ${BETA_KEY}`);
    const record = await recordOf(proxy, reply.id);
    assert.equal(record.institution, 'beta');
    assert.equal(record.institutionSource, 'key');
  });

  test('an INSTITUTIONS_FILE key is one of its institution\'s keys next to POLICY_FILE', async () => {
    const reply = await post(proxy, { authorization: `Bearer ${LEGACY_KEY}` });
    const record = await recordOf(proxy, reply.id);
    assert.equal(record.institution, 'legacy-faculty');
    assert.equal(record.institutionSource, 'key');
  });

  test('the header from a trusted peer (127.0.0.1) is believed and never forwarded', async () => {
    const reply = await post(proxy, { authorization: `Bearer ${UNMAPPED_KEY}`, [HEADER]: 'law' });
    assert.equal(reply.status, 200);
    assert.equal(lastUpstream().headers[HEADER], undefined, 'the policy\'s institution header is not forwarded');
    const record = await recordOf(proxy, reply.id);
    assert.equal(record.institution, 'law');
    assert.equal(record.institutionSource, 'header');
  });

  test('spoofing the header while holding another institution\'s key bills the key\'s institution', async () => {
    const withBeta = await recordOf(proxy, (await post(proxy, { authorization: `Bearer ${BETA_KEY}`, [HEADER]: 'acme' })).id);
    assert.equal(withBeta.institution, 'beta');
    assert.equal(withBeta.institutionSource, 'key');
    const withVirtual = await recordOf(proxy, (await post(proxy, { authorization: `Bearer ${ACME_VIRTUAL}`, [HEADER]: 'beta' })).id);
    assert.equal(withVirtual.institution, 'acme');
    assert.equal(withVirtual.institutionSource, 'virtual_key');
    assert.equal(lastUpstream().headers[HEADER], undefined);
  });

  test('the header from an untrusted peer is not believed: with requireInstitution, 401 institution_required', async () => {
    const before = upstream.requests.length;
    const client = new OpenAI({ apiKey: UNMAPPED_KEY, baseURL: `${strict.url}/v1`, maxRetries: 0, defaultHeaders: { [HEADER]: 'law' } });
    await assert.rejects(client.chat.completions.create(CHAT), (err: unknown) => {
      assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
      assert.equal(err.status, 401);
      assert.equal(err.code, 'institution_required');
      return true;
    });
    assert.equal(upstream.requests.length, before, 'nothing sent upstream');
    // A key the strict policy knows still passes, and its header still stays home.
    const reply = await post(strict, { authorization: `Bearer ${BETA_KEY}`, [HEADER]: 'law' });
    assert.equal(reply.status, 200);
    assert.equal(lastUpstream().headers[HEADER], undefined);
    assert.equal((await recordOf(strict, reply.id)).institution, 'beta');
  });
});

describe('refused keys never reach upstream', () => {
  for (const [name, key] of [
    ['a disabled virtual key', REVOKED_VIRTUAL],
    ['an unknown sk-proxy- key', UNKNOWN_VIRTUAL],
  ] as const) {
    test(`${name}: 401 invalid_api_key (the SDK's AuthenticationError), recorded rejected`, async () => {
      const before = upstream.requests.length;
      const client = new OpenAI({ apiKey: key, baseURL: `${proxy.url}/v1`, maxRetries: 0 });
      let id = '';
      await assert.rejects(client.chat.completions.create(CHAT), (err: unknown) => {
        assert.ok(err instanceof OpenAI.AuthenticationError, String(err));
        assert.equal(err.code, 'invalid_api_key');
        assert.equal(err.type, 'invalid_request_error');
        id = err.headers.get('x-proxy-request-id') ?? '';
        return true;
      });
      assert.equal(upstream.requests.length, before, 'nothing sent upstream');
      const record = await recordOf(proxy, id);
      assert.equal(record.outcome, 'rejected');
      assert.equal(record.error?.type, 'invalid_api_key');
      assert.equal(record.response.status, 401);
      assert.equal(record.apiKey?.fingerprint, fingerprint(key));
    });
  }

  test('a disabled virtual key in the subprotocol: the handshake is refused with 401, no session upstream', async () => {
    const sessions = upstream.wsSessions.length;
    const ws = new WebSocket(wsUrl(proxy.url, '/v1/realtime?model=gpt-realtime'), ['realtime', `openai-insecure-api-key.${REVOKED_VIRTUAL}`]);
    const [, response] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
    assert.equal(response.statusCode, 401);
    ws.on('error', () => undefined);
    ws.terminate();
    assert.equal(upstream.wsSessions.length, sessions);
  });
});

describe('what observers keep', () => {
  test('records, spans and metrics never hold the real key; the metrics carry the institution', async () => {
    const reply = await post(proxy, { authorization: `Bearer ${ACME_VIRTUAL}` });
    await recordOf(proxy, reply.id);
    const journal = journalText(join(files.dir, 'audit'));
    assert.ok(journal.includes(fingerprint(ACME_VIRTUAL)));
    assert.ok(!journal.includes(ACME_REAL), 'no real key in the journal');
    assert.ok(!journal.includes(ACME_VIRTUAL), 'no virtual key in the journal either (fingerprints only)');
    const [server] = await receiver.waitForSpans((s) => s.attributes['openai_proxy.request_id'] === reply.id);
    assert.ok(server !== undefined);
    await receiver.waitForSpans((s) => s.traceId === server.traceId, 10_000, 2);
    const spans = JSON.stringify(receiver.spans, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v));
    assert.ok(spans.includes('acme'), 'the spans name the institution');
    assert.ok(!spans.includes(ACME_REAL), 'no real key in any span');
    const metrics = await (await request(`${proxy.adminUrl}/metrics`)).body.text();
    assert.match(metrics, /openai_proxy_requests_total\{[^}]*institution="acme"[^}]*\} [1-9]/);
    assert.match(metrics, /openai_proxy_requests_total\{[^}]*institution="beta"/);
    assert.ok(!metrics.includes(ACME_REAL), 'no real key in the metrics');
  });

  test('/healthz shows the policy in force', async () => {
    const health = (await (await request(`${proxy.adminUrl}/healthz`)).body.json()) as { policy: Record<string, unknown> };
    const path = proxy.config.policy?.path as string;
    assert.equal(health.policy.path, path);
    assert.equal(health.policy.sha256, createHash('sha256').update(readFileSync(path)).digest('hex'));
    assert.ok(!Number.isNaN(Date.parse(String(health.policy.loadedAt))));
    assert.equal(health.policy.lastError, null);
    assert.ok(!JSON.stringify(health).includes(ACME_REAL));
  });
});

describe('reload', () => {
  const NEW_VIRTUAL = newVirtualKey();
  const REAL_V1 = `sk-real-rotating-${randomBytes(8).toString('hex')}-v1`;
  const REAL_V2 = `sk-real-rotating-${randomBytes(8).toString('hex')}-v2`;
  let reloading: TestProxy;
  let path: string;

  const policyWith = (withNewKey: boolean, disabled = false): string =>
    `version: 1
virtualKeys:
  - { fingerprint: ${fingerprint(ACME_VIRTUAL)}, institution: acme, upstreamKey: { env: OPENAI_API_KEY_ACME } }
${withNewKey ? `  - { fingerprint: ${fingerprint(NEW_VIRTUAL)}, institution: gamma, upstreamKey: { file: gamma-secret.txt }, disabled: ${disabled} }\n` : ''}`;

  async function health(): Promise<{ sha256: string; lastError: string | null }> {
    const body = (await (await request(`${reloading.adminUrl}/healthz`)).body.json()) as { policy: { sha256: string; lastError: string | null } };
    return body.policy;
  }

  async function reloads(): Promise<string> {
    return (await (await request(`${reloading.adminUrl}/metrics`)).body.text())
      .split('\n')
      .filter((l) => l.startsWith('openai_proxy_policy_reloads_total{'))
      .sort()
      .join('\n');
  }

  const dir = policyDir();

  before(async () => {
    dir.write('gamma-secret.txt', `${REAL_V1}\n`);
    path = dir.write('policy.yaml', policyWith(false));
    reloading = await startTestProxy({
      UPSTREAM_URL: upstream.url,
      POLICY_FILE: path,
      OPENAI_API_KEY_ACME: ACME_REAL,
      METRICS_ENABLED: 'true',
      AUDIT_ENABLED: 'true',
      AUDIT_DIR: join(dir.dir, 'audit'),
    });
  });

  after(async () => {
    await reloading.close();
    dir.remove();
  });

  test('both result series exist from the start', async () => {
    assert.equal(await reloads(), 'openai_proxy_policy_reloads_total{result="error"} 0\nopenai_proxy_policy_reloads_total{result="ok"} 0');
  });

  test('without institutionHeader, INSTITUTION_HEADER is believed from no one (and still not forwarded)', async () => {
    const reply = await post(reloading, { authorization: `Bearer ${UNMAPPED_KEY}`, 'x-institution-id': 'law' });
    assert.equal(reply.status, 200);
    assert.equal(lastUpstream().headers['x-institution-id'], undefined);
    const record = await recordOf(reloading, reply.id);
    assert.equal(record.institution, null);
    assert.equal(record.institutionSource, null);
    assert.equal(record.apiKey?.fingerprint, fingerprint(UNMAPPED_KEY));
  });

  test('a key added to the file works without a restart (file change)', async () => {
    assert.equal((await post(reloading, { authorization: `Bearer ${NEW_VIRTUAL}` })).status, 401, 'unknown before the edit');
    const before = (await health()).sha256;
    writeFileSync(path, policyWith(true));
    await until(async () => (await health()).sha256 !== before, 10_000, 'the file change to be loaded');
    const reply = await post(reloading, { authorization: `Bearer ${NEW_VIRTUAL}` });
    assert.equal(reply.status, 200);
    assert.equal(lastUpstream().headers.authorization, `Bearer ${REAL_V1}`);
    assert.match(await reloads(), /result="ok"\} 1/);
  });

  test('SIGHUP reads the upstream key file again (a rotated secret)', async () => {
    writeFileSync(join(path, '..', 'gamma-secret.txt'), `${REAL_V2}\n`);
    process.kill(process.pid, 'SIGHUP');
    await until(async () => /result="ok"\} 2/.test(await reloads()), 10_000, 'the SIGHUP reload');
    assert.equal((await post(reloading, { authorization: `Bearer ${NEW_VIRTUAL}` })).status, 200);
    assert.equal(lastUpstream().headers.authorization, `Bearer ${REAL_V2}`);
  });

  test('a bad file keeps the old policy: /healthz says why, the error is counted', async () => {
    const before = await health();
    writeFileSync(path, `${policyWith(true)}institutions:\n  acme: { limits: [ { window: weekly, requests: 1 } ] }\n`);
    await until(async () => (await health()).lastError !== null, 10_000, 'the failed reload');
    const after = await health();
    assert.equal(after.sha256, before.sha256, 'the policy in force is the old one');
    assert.match(String(after.lastError), /institutions\.acme\.limits\[0\]\.window: "weekly" is not one of minute, hour, day, month/);
    assert.match(await reloads(), /result="error"\} 1/);
    const reply = await post(reloading, { authorization: `Bearer ${NEW_VIRTUAL}` });
    assert.equal(reply.status, 200, 'the old policy still admits its keys');
  });

  test('a session admitted under the old policy keeps going after its key is revoked; a new one is refused', async () => {
    const url = wsUrl(reloading.url, '/v1/realtime?model=gpt-realtime');
    const ws = new WebSocket(url, ['realtime', `openai-insecure-api-key.${NEW_VIRTUAL}`]);
    await once(ws, 'open');
    const before = (await health()).sha256;
    writeFileSync(path, policyWith(true, true));
    await until(async () => (await health()).sha256 !== before, 10_000, 'the revocation to be loaded');
    assert.equal((await health()).lastError, null);
    const done = new Promise<void>((resolve) => {
      ws.on('message', (data: Buffer) => (JSON.parse(data.toString('utf8')) as { type: string }).type === 'response.done' && resolve());
    });
    ws.send(JSON.stringify({ type: 'response.create' }));
    await done;
    ws.close();
    await once(ws, 'close');
    const refused = new WebSocket(url, ['realtime', `openai-insecure-api-key.${NEW_VIRTUAL}`]);
    const [, response] = (await once(refused, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
    refused.on('error', () => undefined);
    refused.terminate();
    assert.equal(response.statusCode, 401);
    assert.equal((await post(reloading, { authorization: `Bearer ${NEW_VIRTUAL}` })).status, 401);
  });
});

test('a bad POLICY_FILE at start: exit 2 with the problem at its place in the file', async () => {
  const dir = policyDir();
  try {
    const path = dir.write('bad.yaml', 'version: 1\ninstitutions:\n  acme:\n    limits: [ { window: weekly, requests: 1 } ]\n');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: { PATH: process.env.PATH ?? '', POLICY_FILE: path, PORT: '0', ADMIN_PORT: '0', AUDIT_ENABLED: 'false', METRICS_ENABLED: 'false' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    assert.equal(code, 2, stderr);
    assert.match(stderr, /invalid policy file/);
    assert.match(stderr, /bad\.yaml: institutions\.acme\.limits\[0\]\.window: "weekly" is not one of minute, hour, day, month \(line 4\)/);
  } finally {
    dir.remove();
  }
});

test('the logs never hold a real key or a virtual key', () => {
  assert.match(logged, /policy reload failed/, 'the logs of this file were captured');
  for (const secret of [ACME_REAL, ACME_VIRTUAL, 'sk-real-rotating-']) assert.ok(!logged.includes(secret), `no ${secret.slice(0, 12)}… in the logs`);
});
