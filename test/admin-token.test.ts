/**
 * ADMIN_TOKEN: when set, every admin endpoint but the probes (/healthz, /readyz) wants it as a
 * bearer token (RFC 6750 §2.1); a request without it, or with another, gets an OpenAI-shaped 401.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { ConfigError, loadConfig } from '../src/config.ts';
import { policyDir } from './support/policy.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';

const TOKEN = 'adm1n-t0ken-0123456789abcdef';
const files = policyDir();
let guarded: TestProxy;
let open: TestProxy;

before(async () => {
  const policy = files.write('policy.yaml', 'version: 1\ninstitutions:\n  acme: { limits: [ { window: day, requests: 5 } ] }\n');
  guarded = await startTestProxy({ METRICS_ENABLED: 'true', POLICY_FILE: policy, ADMIN_TOKEN: TOKEN });
  open = await startTestProxy({ METRICS_ENABLED: 'true', POLICY_FILE: policy });
});

after(async () => {
  await guarded.close();
  await open.close();
  files.remove();
});

async function get(p: TestProxy, path: string, authorization?: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  const res = await request(`${p.adminUrl}${path}`, { headers: authorization === undefined ? {} : { authorization } });
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() };
}

test('with ADMIN_TOKEN, /metrics and /quotas without the token, or with another, are a 401 in the OpenAI shape', async () => {
  for (const path of ['/metrics', '/quotas', '/nowhere']) {
    for (const authorization of [undefined, 'Bearer wrong-token-0123456789abcdef', `Basic ${TOKEN}`, `Bearer ${TOKEN}x`, 'Bearer ']) {
      const res = await get(guarded, path, authorization);
      assert.equal(res.status, 401, `${path} with ${String(authorization)}`);
      assert.equal(res.headers['www-authenticate'], 'Bearer realm="openai-api-proxy admin"');
      const body = JSON.parse(res.body) as { error: { code: string; type: string; param: null; message: string } };
      assert.equal(body.error.code, 'invalid_admin_token');
      assert.equal(body.error.type, 'invalid_request_error');
      assert.equal(body.error.param, null);
      assert.doesNotMatch(res.body, new RegExp(TOKEN));
    }
  }
});

test('with ADMIN_TOKEN, the right bearer token is accepted (any case of the scheme)', async () => {
  const metrics = await get(guarded, '/metrics', `Bearer ${TOKEN}`);
  assert.equal(metrics.status, 200);
  assert.match(metrics.body, /openai_proxy_requests_total|process_cpu/);
  const quotas = await get(guarded, '/quotas', `bearer ${TOKEN}`);
  assert.equal(quotas.status, 200);
  assert.deepEqual((JSON.parse(quotas.body) as { institutions: Record<string, unknown[]> }).institutions.acme?.length, 1);
});

test('with ADMIN_TOKEN, the probes stay open', async () => {
  assert.equal((await get(guarded, '/healthz')).status, 200);
  assert.equal((await get(guarded, '/readyz')).status, 200);
});

test('without ADMIN_TOKEN, the admin port is open as before', async () => {
  assert.equal((await get(open, '/metrics')).status, 200);
  assert.equal((await get(open, '/quotas')).status, 200);
});

test('a bad ADMIN_TOKEN stops the start with one line naming it', () => {
  assert.throws(() => loadConfig({ ADMIN_TOKEN: 'short' }), (err: unknown) => err instanceof ConfigError && /ADMIN_TOKEN: too short/.test(err.message));
  assert.throws(() => loadConfig({ ADMIN_TOKEN: 'has spaces in it 0123456789' }), (err: unknown) => err instanceof ConfigError && /ADMIN_TOKEN/.test(err.message));
  assert.equal(loadConfig({ ADMIN_TOKEN: TOKEN }).adminToken, TOKEN);
});
