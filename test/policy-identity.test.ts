/**
 * Identity, in the contract's order: every path the Tests section names that the
 * resolver decides on its own (virtual key in each place, mapped key, trusted and untrusted
 * header from IPv4 and IPv6 peers, a spoofed header with another institution's key, disabled
 * and unknown proxy keys, required institution), and the swap that puts the real key upstream.
 */
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import { after, test } from 'node:test';
import { fingerprint } from '../src/audit/record/identity.ts';
import { describeError } from '../src/proxy/errors.ts';
import { clientSubprotocol, swapCredentialHeaders, swapSubprotocols } from '../src/policy/credential-swap.ts';
import { InstitutionRequiredError, InvalidApiKeyError } from '../src/policy/errors.ts';
import { type Identity, resolveIdentity } from '../src/policy/identity.ts';
import { loadPolicy } from '../src/policy/policy-file.ts';
import type { Policy } from '../src/policy/types.ts';
import { newVirtualKey } from '../src/policy/virtual-key-format.ts';
import { policyDir } from './support/policy.ts';

const files = policyDir();
after(() => files.remove());

const ACME_VIRTUAL = newVirtualKey();
const REVOKED_VIRTUAL = newVirtualKey();
const ACME_CLIENT_KEY = 'sk-acme-own-openai-key-000000000001';
const BETA_CLIENT_KEY = 'sk-beta-own-openai-key-000000000002';
const ACME_UPSTREAM = 'sk-real-acme-upstream-key-999999';
const TRUSTED_V4 = '10.20.30.40';
const TRUSTED_V6 = 'fd00::1234';
const UNTRUSTED_V4 = '203.0.113.9';
const UNTRUSTED_V6 = '2001:db8::9';

function policyFile(requireInstitution: boolean): string {
  return `version: 1
virtualKeys:
  - { fingerprint: ${fingerprint(ACME_VIRTUAL)}, institution: acme, upstreamKey: { env: OPENAI_API_KEY_ACME } }
  - { fingerprint: ${fingerprint(REVOKED_VIRTUAL)}, institution: acme, upstreamKey: { env: OPENAI_API_KEY_ACME }, disabled: true }
institutions:
  acme: { keys: [ ${fingerprint(ACME_CLIENT_KEY)} ] }
  beta: { keys: [ ${fingerprint(BETA_CLIENT_KEY)} ] }
institutionHeader:
  name: x-institution-id
  trustedFrom: [ 10.0.0.0/8, "fd00::/8" ]
requireInstitution: ${requireInstitution}
`;
}

const env = { OPENAI_API_KEY_ACME: ACME_UPSTREAM };
const policy: Policy = loadPolicy(files.write('policy.yaml', policyFile(false)), { env });
const strict: Policy = loadPolicy(files.write('strict.yaml', policyFile(true)), { env });

const PLACES: [string, (key: string) => IncomingHttpHeaders, (key: string) => string[]][] = [
  ['Authorization: Bearer', (k) => ({ authorization: `Bearer ${k}` }), (k) => ['Authorization', `Bearer ${k}`]],
  ['Authorization: bearer (any case)', (k) => ({ authorization: `bearer ${k}` }), (k) => ['authorization', `bearer ${k}`]],
  ['api-key (Azure)', (k) => ({ 'api-key': k }), (k) => ['api-key', k]],
  ['openai-api-key', (k) => ({ 'openai-api-key': k }), (k) => ['OpenAI-Api-Key', k]],
  [
    'Realtime subprotocol',
    (k) => ({ 'sec-websocket-protocol': `realtime, openai-insecure-api-key.${k}, openai-beta.realtime-v1` }),
    (k) => ['Sec-WebSocket-Protocol', `realtime, openai-insecure-api-key.${k}, openai-beta.realtime-v1`],
  ],
  [
    'Realtime subprotocol, prefix in another case',
    (k) => ({ 'sec-websocket-protocol': `realtime,OpenAI-Insecure-API-Key.${k}` }),
    (k) => ['sec-websocket-protocol', `realtime,OpenAI-Insecure-API-Key.${k}`],
  ],
];

for (const [place, headersWith, rawWith] of PLACES) {
  test(`virtual key in ${place}: acme's, swapped for the upstream key in the same place`, () => {
    const identity = resolveIdentity(policy, headersWith(ACME_VIRTUAL), UNTRUSTED_V4);
    assert.equal(identity.institution, 'acme');
    assert.equal(identity.source, 'virtual_key');
    assert.equal(identity.fingerprint, fingerprint(ACME_VIRTUAL));
    assert.equal(identity.credential?.key, ACME_VIRTUAL);
    const upstreamKey = identity.virtualKey?.upstreamKey?.reveal();
    assert.equal(upstreamKey, ACME_UPSTREAM);

    const flat = ['Host', 'proxy.local', ...rawWith(ACME_VIRTUAL), 'Content-Type', 'application/json'];
    const swapped = swapCredentialHeaders(flat, ACME_VIRTUAL, upstreamKey);
    assert.deepEqual(swapped, ['Host', 'proxy.local', ...rawWith(ACME_UPSTREAM), 'Content-Type', 'application/json']);
    assert.ok(!swapped.join('\n').includes(ACME_VIRTUAL), 'the virtual key never goes upstream');
    assert.deepEqual(flat.slice(2, 4), rawWith(ACME_VIRTUAL), 'the input list is left alone');
  });
}

test('Realtime subprotocols: the key entry swapped in place, the chosen one confirmed as the client offered it', () => {
  const sent = ['realtime', `OpenAI-Insecure-API-Key.${ACME_VIRTUAL}`, 'openai-beta.realtime-v1'];
  const forwarded = swapSubprotocols(sent, ACME_VIRTUAL, ACME_UPSTREAM);
  assert.deepEqual(forwarded, ['realtime', `OpenAI-Insecure-API-Key.${ACME_UPSTREAM}`, 'openai-beta.realtime-v1']);
  assert.equal(clientSubprotocol('realtime', sent, forwarded), 'realtime');
  // A server that echoes the key's entry must not hand the real key to the client.
  assert.equal(clientSubprotocol(`OpenAI-Insecure-API-Key.${ACME_UPSTREAM}`, sent, forwarded), sent[1]);
  assert.equal(clientSubprotocol(`openai-insecure-api-key.${ACME_UPSTREAM}x`, sent, forwarded), '');
  assert.deepEqual(swapSubprotocols(['realtime'], ACME_VIRTUAL, ACME_UPSTREAM), ['realtime']);
});

test('the swap leaves credentials that are not the virtual key as they are', () => {
  const flat = ['authorization', 'Bearer sk-other', 'api-key', 'sk-other', 'x-note', ACME_VIRTUAL];
  assert.deepEqual(swapCredentialHeaders(flat, ACME_VIRTUAL, ACME_UPSTREAM), flat);
  const both = ['authorization', `Bearer ${ACME_VIRTUAL}`, 'api-key', ACME_VIRTUAL];
  assert.deepEqual(swapCredentialHeaders(both, ACME_VIRTUAL, ACME_UPSTREAM), ['authorization', `Bearer ${ACME_UPSTREAM}`, 'api-key', ACME_UPSTREAM]);
});

test("mapped key: a client-held key listed in an institution's keys", () => {
  const identity = resolveIdentity(policy, { authorization: `Bearer ${BETA_CLIENT_KEY}` }, UNTRUSTED_V6);
  assert.deepEqual(identity, {
    institution: 'beta',
    source: 'key',
    credential: { key: BETA_CLIENT_KEY, place: 'authorization' },
    fingerprint: fingerprint(BETA_CLIENT_KEY),
    virtualKey: null,
  } satisfies Identity);
  assert.equal(resolveIdentity(policy, { 'api-key': ACME_CLIENT_KEY }, undefined).institution, 'acme');
});

for (const [peer, family] of [
  [TRUSTED_V4, 'IPv4'],
  [`::ffff:${TRUSTED_V4}`, 'IPv4-mapped IPv6'],
  [TRUSTED_V6, 'IPv6'],
] as const) {
  test(`trusted header from an ${family} peer in trustedFrom is believed`, () => {
    const identity = resolveIdentity(policy, { 'x-institution-id': ' gamma ', authorization: 'Bearer sk-unlisted' }, peer);
    assert.equal(identity.institution, 'gamma');
    assert.equal(identity.source, 'header');
    assert.equal(identity.fingerprint, fingerprint('sk-unlisted'));
    assert.equal(identity.virtualKey, null);
    assert.equal(resolveIdentity(policy, { 'x-institution-id': 'gamma' }, peer).institution, 'gamma');
  });
}

for (const [peer, family] of [
  [UNTRUSTED_V4, 'IPv4'],
  [`::ffff:${UNTRUSTED_V4}`, 'IPv4-mapped IPv6'],
  [UNTRUSTED_V6, 'IPv6'],
  [undefined, 'unknown'],
] as const) {
  test(`untrusted header from an ${family} peer is ignored`, () => {
    const identity = resolveIdentity(policy, { 'x-institution-id': 'gamma', authorization: 'Bearer sk-unlisted' }, peer);
    assert.equal(identity.institution, null);
    assert.equal(identity.source, null);
    assert.equal(identity.fingerprint, fingerprint('sk-unlisted'));
  });
}

test("a spoofed header never wins over the key: another institution's key decides, even from a trusted peer", () => {
  const spoofVirtual = resolveIdentity(policy, { authorization: `Bearer ${ACME_VIRTUAL}`, 'x-institution-id': 'beta' }, TRUSTED_V4);
  assert.equal(spoofVirtual.institution, 'acme');
  assert.equal(spoofVirtual.source, 'virtual_key');
  const spoofMapped = resolveIdentity(policy, { authorization: `Bearer ${BETA_CLIENT_KEY}`, 'x-institution-id': 'acme' }, TRUSTED_V6);
  assert.equal(spoofMapped.institution, 'beta');
  assert.equal(spoofMapped.source, 'key');
});

function refused(fn: () => unknown, kind: typeof InvalidApiKeyError | typeof InstitutionRequiredError, code: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof kind);
    const described = describeError(err);
    assert.equal(described.status, 401);
    assert.equal(described.outcome, 'rejected');
    const body = JSON.parse(described.body) as { error: { code: string; type: string; param: null; message: string } };
    assert.equal(body.error.code, code);
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.param, null);
    assert.ok(!body.error.message.includes('sk-'), 'no key in the message');
    return true;
  });
}

test('a disabled virtual key: 401 invalid_api_key, in every place', () => {
  for (const [, headersWith] of PLACES) {
    refused(() => resolveIdentity(policy, headersWith(REVOKED_VIRTUAL), TRUSTED_V4), InvalidApiKeyError, 'invalid_api_key');
  }
});

test('an unknown key with the proxy prefix: 401 invalid_api_key, never forwarded as a client key', () => {
  const unknown = newVirtualKey();
  for (const [, headersWith] of PLACES) {
    refused(() => resolveIdentity(policy, { ...headersWith(unknown), 'x-institution-id': 'acme' }, TRUSTED_V4), InvalidApiKeyError, 'invalid_api_key');
  }
});

test('a second, proxy-issued key beside the first is refused (it would reach upstream unswapped)', () => {
  refused(
    () => resolveIdentity(policy, { authorization: `Bearer ${BETA_CLIENT_KEY}`, 'api-key': ACME_VIRTUAL }, UNTRUSTED_V4),
    InvalidApiKeyError,
    'invalid_api_key',
  );
  refused(
    () => resolveIdentity(policy, { authorization: `Bearer ${ACME_VIRTUAL}`, 'sec-websocket-protocol': `openai-insecure-api-key.${newVirtualKey()}` }, UNTRUSTED_V4),
    InvalidApiKeyError,
    'invalid_api_key',
  );
  // The same virtual key twice is one credential (the swap replaces both).
  assert.equal(resolveIdentity(policy, { authorization: `Bearer ${ACME_VIRTUAL}`, 'api-key': ACME_VIRTUAL }, undefined).institution, 'acme');
});

test('no key and no trusted header: null, or 401 institution_required when the policy requires one', () => {
  assert.deepEqual(resolveIdentity(policy, {}, TRUSTED_V4), {
    institution: null,
    source: null,
    credential: null,
    fingerprint: null,
    virtualKey: null,
  });
  refused(() => resolveIdentity(strict, {}, TRUSTED_V4), InstitutionRequiredError, 'institution_required');
  refused(() => resolveIdentity(strict, { authorization: 'Bearer sk-unlisted' }, TRUSTED_V4), InstitutionRequiredError, 'institution_required');
  refused(() => resolveIdentity(strict, { 'x-institution-id': 'acme' }, UNTRUSTED_V6), InstitutionRequiredError, 'institution_required');
  refused(() => resolveIdentity(strict, { 'x-institution-id': '  ' }, TRUSTED_V6), InstitutionRequiredError, 'institution_required');
  assert.equal(resolveIdentity(strict, { 'x-institution-id': 'acme' }, TRUSTED_V6).institution, 'acme');
  assert.equal(resolveIdentity(strict, { authorization: `Bearer ${ACME_VIRTUAL}` }, UNTRUSTED_V4).institution, 'acme');
  assert.equal(resolveIdentity(strict, { authorization: `Bearer ${ACME_CLIENT_KEY}` }, UNTRUSTED_V4).institution, 'acme');
});

test('the header is the one the policy names', () => {
  const custom = loadPolicy(files.write('custom.yaml', 'version: 1\ninstitutionHeader: { name: X-Tenant, trustedFrom: [ 127.0.0.1 ] }\n'), { env: {} });
  assert.equal(resolveIdentity(custom, { 'x-tenant': 'acme' }, '127.0.0.1').institution, 'acme');
  assert.equal(resolveIdentity(custom, { 'x-institution-id': 'acme' }, '127.0.0.1').institution, null);
});
