/**
 * `openai-api-proxy keys new`, run as a user runs it (a child process): the key is printed once,
 * the entry it prints is a valid policy entry, and the key then resolves to its institution.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { fingerprint } from '../src/audit/record/identity.ts';
import { swapCredentialHeaders } from '../src/policy/credential-swap.ts';
import { resolveIdentity } from '../src/policy/identity.ts';
import { loadPolicy } from '../src/policy/policy-file.ts';
import { policyDir } from './support/policy.ts';

const files = policyDir();
after(() => files.remove());

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function cli(...args: string[]): Promise<Run> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const failed = err as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

/** The key (the one line that is not a comment or the entry) and the entry (the indented lines). */
function parseOutput(stdout: string): { key: string; entry: string } {
  const lines = stdout.split('\n');
  const keys = lines.filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith(' '));
  assert.equal(keys.length, 1, stdout);
  return { key: keys[0] as string, entry: lines.filter((l) => l.startsWith('  ')).join('\n') };
}

test('keys new prints a new key once and an entry that loads and resolves the key to its institution', async () => {
  const run = await cli('keys', 'new', '--institution', 'acme');
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, '');
  const { key, entry } = parseOutput(run.stdout);
  assert.match(key, /^sk-proxy-[0-9A-Za-z]{43}$/);
  assert.equal(run.stdout.split(key).length, 2, 'the key appears once');
  assert.deepEqual(parse(entry), [{ fingerprint: fingerprint(key), institution: 'acme', upstreamKey: { env: 'OPENAI_API_KEY_ACME' } }]);
  assert.match(run.stdout, /set OPENAI_API_KEY_ACME in the proxy's environment/);

  const path = files.write('policy.yaml', `version: 1\nvirtualKeys:\n${entry}\n`);
  const policy = loadPolicy(path, { env: { OPENAI_API_KEY_ACME: 'sk-real-acme' } });
  const identity = resolveIdentity(policy, { authorization: `Bearer ${key}` }, '198.51.100.1');
  assert.equal(identity.institution, 'acme');
  assert.equal(identity.source, 'virtual_key');
  const upstreamKey = identity.virtualKey?.upstreamKey?.reveal() as string;
  assert.deepEqual(swapCredentialHeaders(['authorization', `Bearer ${key}`], key, upstreamKey), ['authorization', 'Bearer sk-real-acme']);
});

test('each run makes a different key; --env and --file name where the real key is', async () => {
  const [a, b, file] = await Promise.all([
    cli('keys', 'new', '--institution', 'Acme EU', '--env', 'ACME_EU_KEY'),
    cli('keys', 'new', '--institution', 'Acme EU'),
    cli('keys', 'new', '--institution', '1234', '--file', '/run/secrets/openai-1234'),
  ]);
  for (const run of [a, b, file]) assert.equal(run.code, 0, run.stderr);
  const first = parseOutput(a.stdout);
  const second = parseOutput(b.stdout);
  assert.notEqual(first.key, second.key);
  assert.deepEqual(parse(first.entry), [{ fingerprint: fingerprint(first.key), institution: 'Acme EU', upstreamKey: { env: 'ACME_EU_KEY' } }]);
  assert.deepEqual((parse(second.entry) as { upstreamKey: unknown }[])[0]?.upstreamKey, { env: 'OPENAI_API_KEY_ACME_EU' });
  // A name YAML would read as a number stays a string.
  const third = parseOutput(file.stdout);
  assert.deepEqual(parse(third.entry), [{ fingerprint: fingerprint(third.key), institution: '1234', upstreamKey: { file: '/run/secrets/openai-1234' } }]);
  const keyFile = files.write('openai-1234', 'sk-real-1234\n');
  const policy = loadPolicy(files.write('p.yaml', `version: 1\nvirtualKeys:\n${third.entry.replace('/run/secrets/openai-1234', keyFile)}\n`), { env: {} });
  assert.equal(resolveIdentity(policy, { 'api-key': third.key }, undefined).institution, '1234');
});

test('--help prints the usage and exits 0', async () => {
  for (const args of [['--help'], ['-h'], ['keys', '--help'], ['keys', 'new', '--help']]) {
    const run = await cli(...args);
    assert.equal(run.code, 0, args.join(' '));
    assert.match(run.stdout, /^Usage: openai-api-proxy <command>/);
    assert.match(run.stdout, /keys new --institution NAME \[--env VAR \| --file PATH\]/);
  }
});

test('usage errors say what is wrong on stderr and exit 2, printing no key', async () => {
  const cases: [string[], RegExp][] = [
    [[], /a command is required/],
    [['serve'], /unknown command "serve"/],
    [['keys'], /keys: a subcommand is required \(new\)/],
    [['keys', 'rotate'], /keys: unknown subcommand "rotate"/],
    [['keys', 'new'], /keys new: --institution is required/],
    [['keys', 'new', '--instituion', 'acme'], /keys new: Unknown option '--instituion'/],
    [['keys', 'new', '--institution'], /keys new: Option '--institution <value>' argument missing/],
    [['keys', 'new', '--institution', 'acme', 'extra'], /keys new: .*extra/],
    [['keys', 'new', '--institution', 'acme', '--env', 'A', '--file', 'b'], /keys new: give --env or --file, not both/],
    [['keys', 'new', '--institution', 'acme', '--env', 'NOT-A-NAME'], /keys new: "NOT-A-NAME" is not an environment variable name/],
    [['keys', 'new', '--institution', ' acme'], /keys new: " acme" is not a usable institution name/],
    [['keys', 'new', '--institution', '経済'], /no variable name can be made from "経済"; give one with --env/],
  ];
  const runs = await Promise.all(cases.map(([args]) => cli(...args)));
  runs.forEach((run, i) => {
    const [args, expected] = cases[i] as [string[], RegExp];
    assert.equal(run.code, 2, args.join(' '));
    assert.equal(run.stdout, '', 'no key printed');
    assert.match(run.stderr, expected);
    assert.match(run.stderr, /^openai-api-proxy: .*\nRun "openai-api-proxy --help" for usage\.\n$/);
  });
});
