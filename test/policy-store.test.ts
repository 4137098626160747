/**
 * The policy store with real files: reload when the file changes (written in place, renamed
 * over by an editor, swapped by a Kubernetes ConfigMap's `..data` symlink) and on SIGHUP;
 * a bad file keeps the policy in force. Every wait is for a reload the store reports.
 */
import assert from 'node:assert/strict';
import { hash } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, mock, test } from 'node:test';
import { PolicyFileError } from '../src/policy/policy-file.ts';
import { type PolicyStatus, PolicyStore, type ReloadResult } from '../src/policy/policy-store.ts';
import { type PolicyDir, policyDir } from './support/policy.ts';

const policyWith = (limit: number): string => `version: 1\ninstitutions:\n  acme:\n    limits: [ { window: minute, requests: ${limit} } ]\n`;
const sha = (text: string): string => hash('sha256', text, 'hex');
const limitOf = (store: PolicyStore): number | undefined => store.current().institutions.get('acme')?.limits?.[0]?.limit;

interface Reload {
  result: ReloadResult;
  error: PolicyFileError | null;
}

/** A store whose reload reports can be awaited: `next(test)` resolves with the first report that passes it. */
function observed(path: string, env: Record<string, string> = {}): { store: PolicyStore; reloads: Reload[]; next: (ok: (r: Reload) => boolean) => Promise<Reload> } {
  const reloads: Reload[] = [];
  const waiters: { ok: (r: Reload) => boolean; resolve: (r: Reload) => void }[] = [];
  const store = new PolicyStore(path, {
    env,
    debounceMs: 25,
    onReload: (result, error) => {
      const reload = { result, error };
      reloads.push(reload);
      for (const waiter of waiters.splice(0)) {
        if (waiter.ok(reload)) waiter.resolve(reload);
        else waiters.push(waiter);
      }
    },
  });
  // The store's watch and timer do not hold the process open (the server does); the bound does.
  const next = (ok: (r: Reload) => boolean): Promise<Reload> =>
    new Promise((resolve, reject) => {
      const bound = setTimeout(() => reject(new Error('no such reload reported within 10 s')), 10_000);
      waiters.push({
        ok,
        resolve: (r) => {
          clearTimeout(bound);
          resolve(r);
        },
      });
    });
  return { store, reloads, next };
}

let files: PolicyDir;
let stores: PolicyStore[] = [];
beforeEach(() => {
  files = policyDir();
  // The store logs each reload on stderr; keep the test output readable (and look at what it says).
  mock.method(process.stderr, 'write', () => true);
});
afterEach(() => {
  for (const store of stores) store.close();
  stores = [];
  mock.restoreAll();
  files.remove();
});

function track(store: PolicyStore): PolicyStore {
  stores.push(store);
  return store;
}

test('a bad file at start throws: the proxy does not start on it', () => {
  const path = files.write('policy.yaml', 'version: 1\nquotaStoreDown: maybe\n');
  assert.throws(() => new PolicyStore(path, { env: {} }), (err: unknown) => err instanceof PolicyFileError && /quotaStoreDown: "maybe"/.test(err.message));
});

test('a good change is swapped in for new requests; a request keeps its snapshot; status shows the new sha256', async () => {
  const path = files.write('policy.yaml', policyWith(10));
  const { store, next } = observed(path);
  track(store).watch();
  const before: PolicyStatus = store.status();
  assert.deepEqual(before, {
    path,
    sha256: sha(policyWith(10)),
    loadedAt: store.current().source.loadedAt.toISOString(),
    lastError: null,
    lastErrorAt: null,
    notEnforced: [],
  });
  const inFlight = store.current();

  const loaded = next((r) => r.result === 'success');
  writeFileSync(path, policyWith(20));
  await loaded;
  // A write can be seen half done (truncated); the store settles on the whole file.
  while (store.status().sha256 !== sha(policyWith(20))) await next((r) => r.result === 'success');

  assert.equal(limitOf(store), 20);
  assert.equal(inFlight.institutions.get('acme')?.limits?.[0]?.limit, 10, 'the in-flight request keeps its policy');
  assert.equal(store.status().lastError, null);
  assert.ok(store.status().loadedAt >= before.loadedAt);
});

test('a bad change keeps the policy in force, logs the problem, reports an error and shows it in status', async () => {
  const path = files.write('policy.yaml', policyWith(10));
  const { store, next } = observed(path);
  track(store).watch();
  const failed = next((r) => r.result === 'error' && r.error?.message.includes('"weekly"') === true);
  writeFileSync(path, policyWith(10).replace('minute', 'weekly'));
  const { error } = await failed;

  assert.equal(limitOf(store), 10);
  assert.equal(store.status().sha256, sha(policyWith(10)));
  assert.match(store.status().lastError ?? '', /institutions\.acme\.limits\[0\]\.window: "weekly" is not one of minute, hour, day, month/);
  assert.match(error?.problems[0] ?? '', /policy\.yaml: institutions\.acme\.limits\[0\]\.window/);
  const logged = (process.stderr.write as unknown as { mock: { calls: { arguments: unknown[] }[] } }).mock.calls
    .map((c) => String(c.arguments[0]))
    .filter((line) => line.includes('policy reload failed'));
  assert.ok(logged.some((line) => /"level":"error"/.test(line) && line.includes('limits[0].window')), logged.join(''));

  // Fixed again: the error clears.
  const recovered = next((r) => r.result === 'success');
  writeFileSync(path, policyWith(30));
  await recovered;
  while (limitOf(store) !== 30) await next((r) => r.result === 'success');
  assert.equal(store.status().lastError, null);
});

test('an editor that writes a new file and renames it over the old one', async () => {
  const path = files.write('policy.yaml', policyWith(10));
  const { store, next, reloads } = observed(path);
  track(store).watch();
  const loaded = next((r) => r.result === 'success');
  // Temp and backup files of editors come and go beside it: none of them is the policy.
  writeFileSync(join(files.dir, '.policy.yaml.swp'), 'junk');
  writeFileSync(join(files.dir, 'policy.yaml.tmp'), policyWith(40));
  renameSync(join(files.dir, 'policy.yaml.tmp'), path);
  await loaded;
  assert.equal(limitOf(store), 40);
  assert.deepEqual(
    reloads.map((r) => r.result),
    ['success'],
    'one reload: the rename is atomic and the temp files are not the policy',
  );

  // And a second save the same way, now that the watched inode is a different one.
  const again = next((r) => r.result === 'success');
  writeFileSync(join(files.dir, 'policy.yaml.tmp'), policyWith(41));
  renameSync(join(files.dir, 'policy.yaml.tmp'), path);
  await again;
  assert.equal(limitOf(store), 41);
});

test("a Kubernetes ConfigMap update: the `..data` symlink swapped to a new directory", async () => {
  // The layout kubelet's atomic writer makes: policy.yaml -> ..data/policy.yaml, ..data -> ..<timestamp>.
  const first = join(files.dir, '..2026_01_01_00_00_00.1');
  mkdirSync(first);
  writeFileSync(join(first, 'policy.yaml'), policyWith(10));
  symlinkSync('..2026_01_01_00_00_00.1', join(files.dir, '..data'));
  symlinkSync('..data/policy.yaml', join(files.dir, 'policy.yaml'));
  const path = join(files.dir, 'policy.yaml');

  const { store, next } = observed(path);
  track(store).watch();
  assert.equal(limitOf(store), 10);

  for (const [n, limit] of [
    [2, 50],
    [3, 60],
  ] as const) {
    const loaded = next((r) => r.result === 'success');
    const dir = join(files.dir, `..2026_01_01_00_00_00.${n}`);
    mkdirSync(dir);
    writeFileSync(join(dir, 'policy.yaml'), policyWith(limit));
    symlinkSync(`..2026_01_01_00_00_00.${n}`, join(files.dir, '..data_tmp'));
    renameSync(join(files.dir, '..data_tmp'), join(files.dir, '..data'));
    rmSync(join(files.dir, `..2026_01_01_00_00_00.${n - 1}`), { recursive: true });
    await loaded;
    assert.equal(limitOf(store), limit);
  }
  assert.equal(store.status().path, path);
});

test('a symlink to a file in another directory: edits of the target reload', async () => {
  const elsewhere = policyDir();
  try {
    const target = elsewhere.write('real-policy.yaml', policyWith(10));
    symlinkSync(target, join(files.dir, 'policy.yaml'));
    const { store, next } = observed(join(files.dir, 'policy.yaml'));
    track(store).watch();
    const loaded = next((r) => r.result === 'success');
    writeFileSync(join(elsewhere.dir, 'real-policy.yaml.tmp'), policyWith(80));
    renameSync(join(elsewhere.dir, 'real-policy.yaml.tmp'), target);
    await loaded;
    assert.equal(limitOf(store), 80);
  } finally {
    elsewhere.remove();
  }
});

test('SIGHUP reloads, secrets included, even when the policy file is unchanged', async () => {
  const keyFile = files.write('acme.key', 'sk-real-one\n');
  const path = files.write(
    'policy.yaml',
    `version: 1\nvirtualKeys:\n  - { fingerprint: sha256:0f1e2d3c4b5a6978, institution: acme, upstreamKey: { file: ${keyFile} } }\n`,
  );
  const { store, next } = observed(path);
  track(store).watch();
  const upstream = (): string | undefined => store.current().virtualKeys.get('sha256:0f1e2d3c4b5a6978')?.upstreamKey?.reveal();
  assert.equal(upstream(), 'sk-real-one');

  writeFileSync(keyFile, 'sk-real-two\n');
  const reloaded = next(() => true);
  process.kill(process.pid, 'SIGHUP');
  assert.equal((await reloaded).result, 'success');
  assert.equal(upstream(), 'sk-real-two');

  // A secret that goes missing is an error of the file: the old key stays in use.
  unlinkSync(keyFile);
  const failed = next(() => true);
  process.kill(process.pid, 'SIGHUP');
  const { result, error } = await failed;
  assert.equal(result, 'error');
  assert.match(error?.message ?? '', /virtualKeys\[0\]\.upstreamKey\.file: cannot read/);
  assert.equal(upstream(), 'sk-real-two');
});

test('a deleted file is an error that keeps the policy; putting it back loads it', async () => {
  const path = files.write('policy.yaml', policyWith(10));
  const { store, next } = observed(path);
  track(store).watch();
  const failed = next((r) => r.result === 'error');
  unlinkSync(path);
  assert.match((await failed).error?.message ?? '', /cannot read: ENOENT/);
  assert.equal(limitOf(store), 10);
  assert.match(store.status().lastError ?? '', /ENOENT/);

  const back = next((r) => r.result === 'success');
  writeFileSync(join(files.dir, 'policy.yaml.new'), policyWith(10));
  renameSync(join(files.dir, 'policy.yaml.new'), path);
  await back;
  assert.equal(store.status().lastError, null);
});

test('reload() reports like the others; close() stops the watch and gives SIGHUP back', () => {
  const path = files.write('policy.yaml', policyWith(10));
  const listeners = process.listenerCount('SIGHUP');
  const { store, reloads } = observed(path);
  store.watch();
  store.watch();
  assert.equal(process.listenerCount('SIGHUP'), listeners + 1);
  writeFileSync(path, policyWith(70));
  assert.equal(store.reload(), 'success');
  assert.equal(limitOf(store), 70);
  assert.deepEqual(reloads, [{ result: 'success', error: null }]);
  unlinkSync(path);
  assert.equal(store.reload(), 'error');
  assert.equal(limitOf(store), 70);
  assert.match((reloads as Reload[])[1]?.error?.message ?? '', /cannot read: ENOENT/);
  store.close();
  assert.equal(process.listenerCount('SIGHUP'), listeners);
});

test('an observer that throws does not break the reload', () => {
  const path = files.write('policy.yaml', policyWith(10));
  const store = track(
    new PolicyStore(path, {
      env: {},
      onReload: () => {
        throw new Error('observer down');
      },
    }),
  );
  writeFileSync(path, policyWith(11));
  assert.equal(store.reload(), 'success');
  assert.equal(limitOf(store), 11);
});

test('what the file sets but this version does not enforce is named on status() and warned at load', () => {
  const write = mock.method(process.stderr, 'write', () => true);
  // Limits are enforced (limits.ts): a file with only limits names nothing and warns nothing.
  const limited = track(observed(files.write('limited.yaml', policyWith(5))).store);
  assert.deepEqual(limited.status().notEnforced, []);
  const ruled = track(observed(files.write('ruled.yaml', 'version: 1\ndefaults:\n  models: [ "gpt-4o*" ]\n')).store);
  assert.deepEqual(ruled.status().notEnforced, ['rules']);
  const warnings = write.mock.calls.map((c) => String(c.arguments[0])).filter((line) => line.includes('does not enforce'));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] ?? '', /"notEnforced":\["rules"\]/);
  const priced = track(observed(files.write('priced.yaml', 'version: 1\nprices:\n  my-model: { input: 1, output: 2 }\ndefaults:\n  models: [ "gpt-4o*" ]\n')).store);
  // Prices are applied (exchange-cost.ts): only the rules are named.
  assert.deepEqual(priced.status().notEnforced, ['rules']);
  const plain = track(observed(files.write('plain.yaml', 'version: 1\ninstitutions:\n  acme:\n    keys: []\n')).store);
  assert.deepEqual(plain.status().notEnforced, []);
});
