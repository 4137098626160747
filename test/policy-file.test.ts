/** The policy file: every field of the contract parsed, and every mistake named at its place in the file. */
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, test } from 'node:test';
import { inspect } from 'node:util';
import { AddressSet } from '../src/policy/address-set.ts';
import { limitsFor, rulesFor } from '../src/policy/effective.ts';
import { mergeLegacyInstitutions } from '../src/policy/legacy-institutions.ts';
import { PolicyFileError, loadPolicy } from '../src/policy/policy-file.ts';
import { policyDir } from './support/policy.ts';

const files = policyDir();
after(() => files.remove());

const ENV = { OPENAI_API_KEY_ACME: 'sk-real-acme-0123456789' };
const AT = new Date('2026-01-02T03:04:05.000Z');

// The contract's example (shared/design/policy-file.md), with its rules; the path template is
// quoted because `{engine}` cannot stand unquoted in a YAML flow mapping.
const CONTRACT = `version: 1
virtualKeys:
  - fingerprint: sha256:0f1e2d3c4b5a6978
    institution: acme
    upstreamKey: { env: OPENAI_API_KEY_ACME }
    limits: [ { window: day, requests: 5000 } ]
    disabled: false
institutions:
  acme:
    keys: [ sha256:1a2b3c4d5e6f7a8b ]
    limits:
      - { window: minute, requests: 600 }
      - { window: day, tokens: 2000000 }
      - { window: month, costUsd: 500 }
    models: [ "gpt-4o*", "gpt-4.1-mini", "text-embedding-3-*" ]
    operations: [ chat.completions, responses, embeddings ]
    maxBodyBytes: 1048576
    record: { bodies: full }
    redact: [ email, "ACME-[0-9]{6}" ]
    rewrites:
      - { model: text-davinci-003, to: gpt-3.5-turbo-instruct }
      - { param: max_tokens, to: max_completion_tokens, models: [ "o*", "gpt-5*" ] }
      - { path: "/v1/engines/{engine}/completions", to: /v1/completions }
      - { header: openai-beta, value: assistants=v2, operations: [ assistants ] }
institutionHeader:
  name: x-institution-id
  trustedFrom: [ 10.0.0.0/8 ]
requireInstitution: false
defaults:
  limits: [ { window: day, costUsd: 50 } ]
quotaStoreDown: open
prices:
  ft:gpt-4o-mini:acme:2024: { input: 0.3, cachedInput: 0.15, output: 1.2 }
`;

function load(name: string, content: string, env: Record<string, string> = ENV): ReturnType<typeof loadPolicy> {
  return loadPolicy(files.write(name, content), { env, now: () => AT });
}

/** The problems of a file that must not load. */
function problemsOf(content: string, name = 'bad.yaml', env: Record<string, string> = ENV): readonly string[] {
  try {
    load(name, content, env);
  } catch (err) {
    assert.ok(err instanceof PolicyFileError, String(err));
    return err.problems;
  }
  assert.fail('the policy loaded');
}

/** A valid file with `extra` appended (top-level YAML). */
const withTop = (extra: string): string => `version: 1\n${extra}\n`;

test("the contract's example loads, every field as written", () => {
  const policy = load('policy.yaml', CONTRACT);
  const path = `${files.dir}/policy.yaml`;
  assert.deepEqual(policy.source, { path, sha256: hash('sha256', readFileSync(path), 'hex'), loadedAt: AT });
  const vk = policy.virtualKeys.get('sha256:0f1e2d3c4b5a6978');
  assert.ok(vk !== undefined);
  assert.equal(vk.institution, 'acme');
  assert.equal(vk.disabled, false);
  assert.equal(vk.upstreamKey?.reveal(), 'sk-real-acme-0123456789');
  assert.deepEqual(vk.upstreamKey?.source, { env: 'OPENAI_API_KEY_ACME' });
  assert.deepEqual(vk.limits, [{ window: 'day', kind: 'requests', limit: 5000 }]);
  const acme = policy.institutions.get('acme');
  assert.ok(acme !== undefined);
  assert.deepEqual(acme.keys, ['sha256:1a2b3c4d5e6f7a8b']);
  assert.deepEqual(acme.limits, [
    { window: 'minute', kind: 'requests', limit: 600 },
    { window: 'day', kind: 'tokens', limit: 2_000_000 },
    { window: 'month', kind: 'costUsd', limit: 500 },
  ]);
  assert.deepEqual(acme.rules, {
    models: ['gpt-4o*', 'gpt-4.1-mini', 'text-embedding-3-*'],
    operations: ['chat.completions', 'responses', 'embeddings'],
    maxBodyBytes: 1_048_576,
    recordBodies: 'full',
    redact: [
      { kind: 'builtin', name: 'email' },
      { kind: 'regex', source: 'ACME-[0-9]{6}' },
    ],
    rewrites: [
      { kind: 'model', from: 'text-davinci-003', to: 'gpt-3.5-turbo-instruct', operations: null },
      { kind: 'param', from: 'max_tokens', to: 'max_completion_tokens', models: ['o*', 'gpt-5*'], operations: null },
      { kind: 'path', from: '/v1/engines/{engine}/completions', to: '/v1/completions' },
      { kind: 'header', name: 'openai-beta', value: 'assistants=v2', models: null, operations: ['assistants'] },
    ],
  });
  assert.equal(policy.keyInstitutions.get('sha256:1a2b3c4d5e6f7a8b'), 'acme');
  assert.equal(policy.institutionHeader.name, 'x-institution-id');
  assert.deepEqual(policy.institutionHeader.trustedFrom.entries, ['10.0.0.0/8']);
  assert.equal(policy.requireInstitution, false);
  assert.deepEqual(policy.defaults.limits, [{ window: 'day', kind: 'costUsd', limit: 50 }]);
  assert.equal(policy.defaults.rules.models, null);
  assert.equal(policy.quotaStoreDown, 'open');
  assert.deepEqual(policy.prices.get('ft:gpt-4o-mini:acme:2024'), { input: 0.3, cachedInput: 0.15, output: 1.2 });
});

test('the same policy in JSON loads the same', () => {
  const yaml = load('policy.yaml', CONTRACT);
  const json = load(
    'policy.json',
    JSON.stringify({
      version: 1,
      virtualKeys: [{ fingerprint: 'sha256:0f1e2d3c4b5a6978', institution: 'acme', upstreamKey: { env: 'OPENAI_API_KEY_ACME' } }],
      institutions: { acme: { keys: ['sha256:1a2b3c4d5e6f7a8b'], limits: [{ window: 'minute', requests: 600 }] } },
      institutionHeader: { trustedFrom: ['10.0.0.0/8', 'fd00::/8'] },
      requireInstitution: true,
      quotaStoreDown: 'closed',
    }),
  );
  assert.equal(json.virtualKeys.get('sha256:0f1e2d3c4b5a6978')?.upstreamKey?.reveal(), yaml.virtualKeys.get('sha256:0f1e2d3c4b5a6978')?.upstreamKey?.reveal());
  assert.deepEqual(json.institutions.get('acme')?.limits, [{ window: 'minute', kind: 'requests', limit: 600 }]);
  assert.equal(json.institutionHeader.name, 'x-institution-id');
  assert.equal(json.requireInstitution, true);
  assert.equal(json.quotaStoreDown, 'closed');
  assert.deepEqual(json.defaults.limits, []);
});

test('defaults: an empty policy is version 1 and nothing else', () => {
  const policy = load('empty.yaml', 'version: 1\n');
  assert.equal(policy.virtualKeys.size, 0);
  assert.equal(policy.institutions.size, 0);
  assert.equal(policy.requireInstitution, false);
  assert.equal(policy.quotaStoreDown, 'open');
  assert.deepEqual(policy.institutionHeader.trustedFrom.entries, []);
  assert.equal(policy.institutionHeader.trustedFrom.has('127.0.0.1'), false);
  const custom = loadPolicy(files.write('empty2.yaml', 'version: 1\n'), { env: {}, defaultInstitutionHeader: 'X-Tenant' });
  assert.equal(custom.institutionHeader.name, 'x-tenant');
});

test("the issue's example: a window that is not one names the file, the place and the choices", () => {
  const bad = CONTRACT.replace('{ window: day, tokens: 2000000 }', '{ window: weekly, tokens: 2000000 }');
  const problems = problemsOf(bad, 'policy.yaml');
  assert.deepEqual(problems, [
    `${files.dir}/policy.yaml: institutions.acme.limits[1].window: "weekly" is not one of minute, hour, day, month (line 13)`,
  ]);
});

test('every problem is reported at once, in the order of the file', () => {
  const problems = problemsOf(withTop('quotaStoreDown: opne\nrequireInstitution: "yes"\ninstitutions:\n  acme: { limit: [] }'));
  assert.equal(problems.length, 3);
  assert.match(problems[0] as string, /: quotaStoreDown: "opne" is not one of open, closed \(did you mean "open"\?\) \(line 2\)$/);
  assert.match(problems[1] as string, /: requireInstitution: expected true or false, got "yes" \(line 3\)$/);
  assert.match(problems[2] as string, /: institutions\.acme\.limit: unknown field; did you mean "limits"\? \(line 5\)$/);
});

// [what is wrong, the file (after `version: 1`), the problem expected]
const MISTAKES: [string, string, RegExp][] = [
  ['unknown top-level field', 'virtualkeys: []', /^virtualkeys: unknown field; did you mean "virtualKeys"\?/],
  ['unknown field far from any', 'colour: blue', /^colour: unknown field; known fields: version, virtualKeys,/],
  ['fingerprint format', vk('fingerprint: sha256:0F1E2D3C4B5A6978'), /^virtualKeys\[0\]\.fingerprint: "sha256:0F1E2D3C4B5A6978" is not a key fingerprint/],
  ['fingerprint too short', vk('fingerprint: sha256:0f1e'), /^virtualKeys\[0\]\.fingerprint: "sha256:0f1e" is not a key fingerprint/],
  ['a key where its fingerprint belongs', vk('fingerprint: sk-live-secret-value-1234'), /^virtualKeys\[0\]\.fingerprint: an API key \(not shown; the file holds fingerprints, never keys\)/],
  ['institution missing', 'virtualKeys:\n  - { fingerprint: sha256:0f1e2d3c4b5a6978, upstreamKey: { env: OPENAI_API_KEY_ACME } }', /^virtualKeys\[0\]\.institution: is required/],
  ['upstreamKey missing', 'virtualKeys:\n  - { fingerprint: sha256:0f1e2d3c4b5a6978, institution: acme }', /^virtualKeys\[0\]\.upstreamKey: is required/],
  ['upstreamKey both', vk('upstreamKey: { env: A, file: /b }'), /^virtualKeys\[0\]\.upstreamKey: expected exactly one of env \(a variable name\) or file \(a path\)/],
  ['upstreamKey neither', vk('upstreamKey: {}'), /^virtualKeys\[0\]\.upstreamKey: expected exactly one of env/],
  ['upstreamKey unknown field', vk('upstreamKey: { envv: A }'), /^virtualKeys\[0\]\.upstreamKey\.envv: unknown field; did you mean "env"\?/],
  ['env var not set', vk('upstreamKey: { env: OPENAI_API_KEY_NOBODY }'), /^virtualKeys\[0\]\.upstreamKey\.env: environment variable OPENAI_API_KEY_NOBODY is not set/],
  ['env var name', vk('upstreamKey: { env: "A B" }'), /^virtualKeys\[0\]\.upstreamKey\.env: "A B" is not an environment variable name/],
  ['key file unreadable', vk('upstreamKey: { file: /nonexistent/openai-key }'), /^virtualKeys\[0\]\.upstreamKey\.file: cannot read "\/nonexistent\/openai-key" \(ENOENT\)/],
  ['a key pasted as the file is never quoted back', vk('upstreamKey: { file: sk-proj-pastedKey1234567890abcdef }'), /^virtualKeys\[0\]\.upstreamKey\.file: cannot read an API key \(not shown; the file holds fingerprints, never keys\) \(ENOENT\)(?![\s\S]*pastedKey)/],
  ['disabled not a boolean', vk('disabled: "no"'), /^virtualKeys\[0\]\.disabled: expected true or false, got "no"/],
  ['virtualKeys not a list', 'virtualKeys: { a: 1 }', /^virtualKeys: expected a list, got a mapping/],
  ['limit without kind', inst('limits: [ { window: day } ]'), /^institutions\.acme\.limits\[0\]: expected exactly one of requests, tokens, costUsd, got none/],
  ['limit with two kinds', inst('limits: [ { window: day, requests: 1, tokens: 2 } ]'), /^institutions\.acme\.limits\[0\]: expected exactly one of requests, tokens, costUsd, got requests and tokens/],
  ['limit without window', inst('limits: [ { requests: 1 } ]'), /^institutions\.acme\.limits\[0\]\.window: is required/],
  ['limit zero', inst('limits: [ { window: day, requests: 0 } ]'), /^institutions\.acme\.limits\[0\]\.requests: expected a whole number greater than 0, got 0/],
  ['limit fractional requests', inst('limits: [ { window: day, tokens: 1.5 } ]'), /^institutions\.acme\.limits\[0\]\.tokens: expected a whole number greater than 0, got 1\.5/],
  ['limit negative cost', inst('limits: [ { window: day, costUsd: -5 } ]'), /^institutions\.acme\.limits\[0\]\.costUsd: expected a number greater than 0, got -5/],
  ['limit duplicate', inst('limits: [ { window: day, costUsd: 5 }, { window: day, costUsd: 6 } ]'), /^institutions\.acme\.limits\[1\]: a second day costUsd limit \(the first is \[0\]\)/],
  ['virtual key limit', vk('limits: [ { window: fortnight, requests: 1 } ]'), /^virtualKeys\[0\]\.limits\[0\]\.window: "fortnight" is not one of minute, hour, day, month/],
  ['defaults limit', 'defaults: { limits: [ { window: hour, costUsd: "5" } ] }', /^defaults\.limits\[0\]\.costUsd: expected a number greater than 0, got "5"/],
  ['institution keys format', inst('keys: [ sha256:zz ]'), /^institutions\.acme\.keys\[0\]: "sha256:zz" is not a key fingerprint/],
  ['a key listed twice', 'institutions:\n  acme: { keys: [ sha256:1a2b3c4d5e6f7a8b ] }\n  beta: { keys: [ sha256:1a2b3c4d5e6f7a8b ] }', /^institutions\.beta\.keys\[0\]: sha256:1a2b3c4d5e6f7a8b is already listed at institutions\.acme\.keys\[0\]/],
  ['a key listed twice, after a bad one', inst('keys: [ sha256:zz, sha256:1a2b3c4d5e6f7a8b, sha256:1a2b3c4d5e6f7a8b ]'), /^institutions\.acme\.keys\[2\]: sha256:1a2b3c4d5e6f7a8b is already listed at institutions\.acme\.keys\[1\]/],
  ['a virtual key also a client key', `${vk('')}\ninstitutions:\n  beta: { keys: [ sha256:0f1e2d3c4b5a6978 ] }`, /^institutions\.beta\.keys\[0\]: sha256:0f1e2d3c4b5a6978 is already listed at virtualKeys\[0\]\.fingerprint/],
  ['institutions not a mapping', 'institutions: [ acme ]', /^institutions: expected a mapping of institution name to entry, got a list/],
  ['institution name with a line break', 'institutions:\n  "ac\\nme": {}', /^institutions\["ac\\nme"\]: "ac\\nme" is not a usable institution name/],
  ['models not a list', inst('models: gpt-4o'), /^institutions\.acme\.models: expected a list, got "gpt-4o"/],
  ['operation name', inst('operations: [ "chat/completions" ]'), /^institutions\.acme\.operations\[0\]: "chat\/completions" is not an operation name as records give it/],
  ['maxBodyBytes', inst('maxBodyBytes: 0'), /^institutions\.acme\.maxBodyBytes: expected a whole number greater than 0, got 0/],
  ['record.bodies', inst('record: { bodies: some }'), /^institutions\.acme\.record\.bodies: "some" is not one of full, none/],
  ['record.bodies missing', inst('record: {}'), /^institutions\.acme\.record\.bodies: is required/],
  ['redact regex', inst('redact: [ "ACME-[0-9" ]'), /^institutions\.acme\.redact\[0\]: "ACME-\[0-9" is not a built-in \(email, phone, card, iban\) nor a valid regular expression/],
  ['redact empty match', inst('redact: [ "x*" ]'), /^institutions\.acme\.redact\[0\]: "x\*" matches the empty string/],
  ['rewrite of no kind', inst('rewrites: [ { to: b } ]'), /^institutions\.acme\.rewrites\[0\]: expected exactly one of model, param, path, header, got none/],
  ['rewrite of two kinds', inst('rewrites: [ { model: a, param: b, to: c } ]'), /^institutions\.acme\.rewrites\[0\]: expected exactly one of model, param, path, header, got model and param/],
  ['rewrite without to', inst('rewrites: [ { model: a } ]'), /^institutions\.acme\.rewrites\[0\]\.to: expected a non-empty string, got nothing/],
  ['rewrite unknown field', inst('rewrites: [ { param: a, to: b, model: [ x ] } ]'), /^institutions\.acme\.rewrites\[0\]: expected exactly one of model, param, path, header, got model and param/],
  ['rewrite filter misspelt', inst('rewrites: [ { param: a, to: b, modles: [ x ] } ]'), /^institutions\.acme\.rewrites\[0\]\.modles: unknown field; did you mean "models"\?/],
  ['path rewrite template', inst('rewrites: [ { path: "v1/x?y", to: /v1/y } ]'), /^institutions\.acme\.rewrites\[0\]\.path: "v1\/x\?y" is not a path template/],
  ['path rewrite placeholder', inst('rewrites: [ { path: "/v1/engines/{engine}/completions", to: "/v1/{model}/completions" } ]'), /^institutions\.acme\.rewrites\[0\]\.to: \{model\} is not a placeholder of path/],
  ['header rewrite name', inst('rewrites: [ { header: "a b", value: c } ]'), /^institutions\.acme\.rewrites\[0\]\.header: "a b" is not a valid header name/],
  ['header rewrite value', inst('rewrites: [ { header: a, value: "c\\r\\nd" } ]'), /^institutions\.acme\.rewrites\[0\]\.value: expected a header value/],
  ['defaults unknown field', 'defaults: { limit: [] }', /^defaults\.limit: unknown field; did you mean "limits"\?/],
  ['defaults rules', 'defaults: { maxBodyBytes: -1 }', /^defaults\.maxBodyBytes: expected a whole number greater than 0, got -1/],
  ['header name', 'institutionHeader: { name: "x institution" }', /^institutionHeader\.name: "x institution" is not a valid header name/],
  ['header name reserved', 'institutionHeader: { name: Authorization }', /^institutionHeader\.name: "Authorization" carries credentials or the request itself/],
  ['trustedFrom address', 'institutionHeader: { trustedFrom: [ 10.0.0.256 ] }', /^institutionHeader\.trustedFrom\[0\]: "10\.0\.0\.256" is not an IP address or CIDR block/],
  ['trustedFrom v4 prefix', 'institutionHeader: { trustedFrom: [ 10.0.0.0/33 ] }', /^institutionHeader\.trustedFrom\[0\]: "10\.0\.0\.0\/33" is not an IP address or CIDR block/],
  ['trustedFrom v6 prefix', 'institutionHeader: { trustedFrom: [ "fd00::/129" ] }', /^institutionHeader\.trustedFrom\[0\]: "fd00::\/129" is not an IP address or CIDR block/],
  ['trustedFrom not a list', 'institutionHeader: { trustedFrom: 10.0.0.0/8 }', /^institutionHeader\.trustedFrom: expected a list, got "10\.0\.0\.0\/8"/],
  ['trustedFrom entry not a string', 'institutionHeader: { trustedFrom: [ 10 ] }', /^institutionHeader\.trustedFrom\[0\]: expected an address or CIDR block, got 10/],
  ['institutionHeader not a mapping', 'institutionHeader: x-id', /^institutionHeader: expected a mapping, got "x-id"/],
  ['virtual key not a mapping', 'virtualKeys: [ sha256:0f1e2d3c4b5a6978 ]', /^virtualKeys\[0\]: expected a mapping, got "sha256:0f1e2d3c4b5a6978"/],
  ['institution not a mapping', 'institutions: { acme: [] }', /^institutions\.acme: expected a mapping, got a list/],
  ['rewrite not a mapping', inst('rewrites: [ x ]'), /^institutions\.acme\.rewrites\[0\]: expected a mapping, got "x"/],
  ['prices not a mapping', 'prices: [ a ]', /^prices: expected a mapping of model to prices, got a list/],
  ['requireInstitution', 'requireInstitution: 1', /^requireInstitution: expected true or false, got 1/],
  ['quotaStoreDown', 'quotaStoreDown: closd', /^quotaStoreDown: "closd" is not one of open, closed \(did you mean "closed"\?\)/],
  ['price negative', 'prices: { gpt-x: { input: -1 } }', /^prices\.gpt-x\.input: -1 is not a number of at least 0/],
  ['price misspelt', 'prices: { gpt-x: { input: 1, ouptut: 2 } }', /^prices\.gpt-x\.ouptut: unknown price field; did you mean "output"\?/],
  ['price empty', 'prices: { gpt-x: {} }', /^prices\.gpt-x: no price given/],
  ['price image size', 'prices: { dall-e-9: { images: { hd: { big: 1 } } } }', /^prices\.dall-e-9\.images\.hd: "big" is not a size like 1024x1024/],
  ['price key quoted', 'prices: { "ft:gpt-4o:acme": { output: x } }', /^prices\["ft:gpt-4o:acme"\]\.output: "x" is not a number of at least 0/],
];

function vk(field: string): string {
  const entry = new Map([
    ['fingerprint', 'sha256:0f1e2d3c4b5a6978'],
    ['institution', 'acme'],
    ['upstreamKey', '{ env: OPENAI_API_KEY_ACME }'],
  ]);
  const [name, value] = field === '' ? [] : [field.slice(0, field.indexOf(':')), field.slice(field.indexOf(':') + 1).trim()];
  if (name !== undefined && value !== undefined) entry.set(name, value);
  return `virtualKeys:\n  - ${[...entry].map(([k, v]) => `${k}: ${v}`).join('\n    ')}`;
}

function inst(field: string): string {
  return `institutions:\n  acme:\n    ${field}`;
}

for (const [what, body, expected] of MISTAKES) {
  test(`named at its place: ${what}`, () => {
    const problems = problemsOf(withTop(body));
    const prefix = `${files.dir}/bad.yaml: `;
    assert.ok(problems.every((p) => p.startsWith(prefix)), problems.join('\n'));
    const found = problems.map((p) => p.slice(prefix.length));
    assert.ok(found.some((p) => expected.test(p)), `expected ${expected} in:\n${found.join('\n')}`);
    assert.ok(found.every((p) => /\(line \d+\)$/.test(p)), 'each YAML problem gives its line');
  });
}

test('version: required, and only 1', () => {
  assert.match(problemsOf('institutions: {}\n')[0] as string, /: version: is required \(this proxy reads version 1\)/);
  assert.match(problemsOf('version: 2\n')[0] as string, /: version: 2 is not supported \(this proxy reads version 1\) \(line 1\)$/);
});

test('malformed files, duplicate keys, unknown extension, unreadable file', () => {
  assert.match(problemsOf('version: 1\ninstitutions: [\n')[0] as string, /bad\.yaml: malformed YAML at line \d+: /);
  assert.match(problemsOf('version: 1\nversion: 1\n')[0] as string, /bad\.yaml: malformed YAML at line 2: Map keys must be unique/);
  assert.match(problemsOf('{"version": 1,', 'bad.json')[0] as string, /bad\.json: malformed JSON: /);
  assert.match(problemsOf('version = 1', 'policy.toml')[0] as string, /policy\.toml: expected a \.yaml, \.yml or \.json file$/);
  assert.throws(() => loadPolicy(`${files.dir}/absent.yaml`, { env: {} }), (err: unknown) => {
    assert.ok(err instanceof PolicyFileError);
    assert.match(err.message, /absent\.yaml: cannot read: ENOENT/);
    return true;
  });
  assert.match(problemsOf('', 'empty.yaml')[0] as string, /empty\.yaml: expected a mapping, got nothing$/);
  assert.match(problemsOf('[1]', 'list.json')[0] as string, /list\.json: expected a mapping, got a list$/);
  // A billion laughs: aliases expanding past any sensible size are refused, not expanded.
  const laughs = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
  for (const [name, prior] of [['b', 'a'], ['c', 'b'], ['d', 'c']]) laughs.push(`${name}: &${name} [${Array(10).fill(`*${prior}`).join(', ')}]`);
  assert.match(problemsOf(`${laughs.join('\n')}\n`)[0] as string, /bad\.yaml: malformed YAML: .*alias/i);
});

test('upstreamKey from a file: relative to the policy file, trimmed; empty or proxy-issued keys refused', () => {
  files.write('acme.key', '  sk-real-from-file-abcdef\n');
  const policy = load('keyfile.yaml', withTop(vk('upstreamKey: { file: acme.key }')), {});
  const key = policy.virtualKeys.get('sha256:0f1e2d3c4b5a6978')?.upstreamKey;
  assert.equal(key?.reveal(), 'sk-real-from-file-abcdef');
  assert.deepEqual(key?.source, { file: 'acme.key' });

  files.write('empty.key', '\n');
  assert.match(problemsOf(withTop(vk('upstreamKey: { file: empty.key }')), 'bad.yaml', {})[0] as string, /upstreamKey\.file: "empty\.key" is empty/);
  const issued = problemsOf(withTop(vk('upstreamKey: { env: K }')), 'bad.yaml', { K: 'sk-proxy-abc' });
  assert.match(issued[0] as string, /upstreamKey\.env: the key found there is one this proxy issued, not an OpenAI key/);
  const spaced = problemsOf(withTop(vk('upstreamKey: { env: K }')), 'bad.yaml', { K: 'sk-a b' });
  assert.match(spaced[0] as string, /upstreamKey\.env: the key found there holds spaces/);
  assert.ok(!spaced[0]?.includes('sk-a b'), 'the secret is never quoted');
});

test("a disabled key's secret is not needed (revoking must not require keeping it)", () => {
  const policy = load('revoked.yaml', withTop(vk('disabled: true').replace('OPENAI_API_KEY_ACME', 'GONE')), {});
  const entry = policy.virtualKeys.get('sha256:0f1e2d3c4b5a6978');
  assert.equal(entry?.disabled, true);
  assert.equal(entry?.upstreamKey, null);
  const shapeless = problemsOf(withTop(vk('disabled: true').replace('{ env: OPENAI_API_KEY_ACME }', '{ env: "A B" }')), 'bad.yaml', {});
  assert.match(shapeless[0] as string, /virtualKeys\[0\]\.upstreamKey\.env: "A B" is not an environment variable name/);
});

test('the policy is frozen and never shows the upstream key', () => {
  const policy = load('policy.yaml', CONTRACT);
  assert.ok(Object.isFrozen(policy));
  assert.ok(Object.isFrozen(policy.institutions.get('acme')?.limits));
  const vkEntry = policy.virtualKeys.get('sha256:0f1e2d3c4b5a6978');
  assert.ok(vkEntry !== undefined && Object.isFrozen(vkEntry));
  const shown = [JSON.stringify(vkEntry), inspect(vkEntry, { depth: 5 }), String(vkEntry.upstreamKey), inspect(policy, { depth: 8 })];
  for (const text of shown) assert.ok(!text.includes('sk-real-acme'), text);
  assert.match(JSON.stringify(vkEntry), /"upstreamKey":\{"env":"OPENAI_API_KEY_ACME"\}/);
  assert.equal(JSON.stringify(policy.institutionHeader), '{"name":"x-institution-id","trustedFrom":["10.0.0.0/8"]}');
  // An institution may be declared with nothing else (YAML's `acme:` is null).
  assert.deepEqual(load('bare.yaml', 'version: 1\ninstitutions:\n  acme:\n').institutions.get('acme')?.keys, []);
});

test('trustedFrom: IPv4 and IPv6 blocks and addresses, IPv4-mapped peers', () => {
  const set = new AddressSet(['10.0.0.0/8', '192.0.2.7', 'fd00::/8', '::1']);
  assert.equal(set.has('10.1.2.3'), true);
  assert.equal(set.has('::ffff:10.1.2.3'), true);
  assert.equal(set.has('11.0.0.1'), false);
  assert.equal(set.has('192.0.2.7'), true);
  assert.equal(set.has('192.0.2.8'), false);
  assert.equal(set.has('fd12:3456::1'), true);
  assert.equal(set.has('fe80::1'), false);
  assert.equal(set.has('::1'), true);
  assert.equal(set.has(undefined), false);
  assert.equal(set.has('not an address'), false);
});

test('INSTITUTIONS_FILE: its fingerprints become keys of their institutions; the policy file wins', () => {
  const legacy = new Map([
    ['sha256:1a2b3c4d5e6f7a8b', 'other'], // already acme's in the file
    ['sha256:0f1e2d3c4b5a6978', 'other'], // a virtual key in the file
    ['sha256:aaaaaaaaaaaaaaaa', 'acme'],
    ['sha256:bbbbbbbbbbbbbbbb', 'legacy-only'],
  ]);
  const policy = load('policy.yaml', CONTRACT);
  const { policy: merged, shadowed } = mergeLegacyInstitutions(policy, legacy);
  assert.deepEqual(shadowed.sort(), ['sha256:0f1e2d3c4b5a6978', 'sha256:1a2b3c4d5e6f7a8b']);
  assert.deepEqual(merged.institutions.get('acme')?.keys, ['sha256:1a2b3c4d5e6f7a8b', 'sha256:aaaaaaaaaaaaaaaa']);
  assert.deepEqual(merged.institutions.get('acme')?.limits, policy.institutions.get('acme')?.limits);
  assert.deepEqual(merged.institutions.get('legacy-only')?.keys, ['sha256:bbbbbbbbbbbbbbbb']);
  assert.equal(merged.institutions.get('legacy-only')?.limits, null);
  assert.equal(merged.keyInstitutions.get('sha256:1a2b3c4d5e6f7a8b'), 'acme');
  assert.equal(merged.keyInstitutions.get('sha256:bbbbbbbbbbbbbbbb'), 'legacy-only');
  assert.equal(merged.keyInstitutions.has('sha256:0f1e2d3c4b5a6978'), false);
  assert.ok(Object.isFrozen(merged));
  // The original is untouched: a snapshot held by a request does not change.
  assert.equal(policy.keyInstitutions.has('sha256:bbbbbbbbbbbbbbbb'), false);

  const viaLoader = loadPolicy(files.write('legacy.yaml', CONTRACT), { env: ENV, legacyInstitutions: legacy });
  assert.equal(viaLoader.keyInstitutions.get('sha256:aaaaaaaaaaaaaaaa'), 'acme');
});

test("what applies: an institution's own limits and rule fields replace the defaults; a virtual key's limits add", () => {
  const policy = load(
    'effective.yaml',
    `version: 1
virtualKeys:
  - { fingerprint: sha256:0f1e2d3c4b5a6978, institution: acme, upstreamKey: { env: OPENAI_API_KEY_ACME }, limits: [ { window: day, requests: 5 } ] }
institutions:
  acme: { limits: [ { window: minute, requests: 600 } ], models: [ "gpt-4o*" ] }
  beta: { keys: [ sha256:1a2b3c4d5e6f7a8b ] }
defaults:
  limits: [ { window: day, costUsd: 50 } ]
  models: [ "gpt-4o-mini" ]
  maxBodyBytes: 1000
`,
  );
  const vkEntry = policy.virtualKeys.get('sha256:0f1e2d3c4b5a6978') ?? null;
  assert.deepEqual(limitsFor(policy, 'acme', vkEntry), {
    institution: [{ window: 'minute', kind: 'requests', limit: 600 }],
    virtualKey: [{ window: 'day', kind: 'requests', limit: 5 }],
  });
  assert.deepEqual(limitsFor(policy, 'beta', null).institution, [{ window: 'day', kind: 'costUsd', limit: 50 }]);
  assert.deepEqual(limitsFor(policy, 'unlisted', null).institution, [{ window: 'day', kind: 'costUsd', limit: 50 }]);
  assert.deepEqual(limitsFor(policy, null, null), { institution: [], virtualKey: [] });
  assert.deepEqual(rulesFor(policy, 'acme').models, ['gpt-4o*']);
  assert.equal(rulesFor(policy, 'acme').maxBodyBytes, 1000);
  assert.deepEqual(rulesFor(policy, 'beta').models, ['gpt-4o-mini']);
  assert.deepEqual(rulesFor(policy, null).models, ['gpt-4o-mini']);
});
