/**
 * One error vocabulary: every error class in src/ is under AppError (src/errors.ts), with a
 * snake_case code unique to it and an HTTP status; every proxy error is described in the OpenAI
 * shape, the admin port's answers included.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { createAdminServer } from '../src/admin.ts';
import { AppError } from '../src/errors.ts';
import { describeError, ProxyError } from '../src/proxy/errors.ts';

const MODULES = [
  '../src/errors.ts',
  '../src/proxy/errors.ts',
  '../src/config.ts',
  '../src/policy/errors.ts',
  '../src/policy/policy-file.ts',
  '../src/policy/prices.ts',
  '../src/policy/quota-error.ts',
  '../src/policy/shared-counts.ts',
  '../src/audit/shipper/shipper-checkpoint.ts',
  '../src/audit/shipper/shipper-mongo.ts',
  '../src/audit/journal/journal-segments.ts',
  '../src/cli/usage.ts',
];

type ErrorClass = new (...args: unknown[]) => Error;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every concrete error class the modules export, by name. */
async function exportedErrors(): Promise<Map<string, ErrorClass>> {
  const classes = new Map<string, ErrorClass>();
  for (const module of MODULES) {
    for (const value of Object.values(await import(module) as Record<string, unknown>)) {
      if (typeof value === 'function' && value.prototype instanceof Error) classes.set(value.name, value as ErrorClass);
    }
  }
  return classes;
}

/** An instance, whatever the constructor takes (a message, a variable and a problem, a list of problems). */
function instance(cls: ErrorClass): Error {
  return new cls(['probe'], 'probe');
}

test('no class in src/ extends Error but the base', () => {
  const root = join(import.meta.dirname, '..', 'src');
  const direct = sources(root)
    .filter((path) => /\bclass\s+\w+\s+extends\s+Error\b/.test(readFileSync(path, 'utf8')))
    .map((path) => relative(root, path));
  assert.deepEqual(direct, ['errors.ts']);
});

test('every exported error class is under AppError, with a snake_case code unique to it and an HTTP status', async () => {
  const classes = await exportedErrors();
  const root = join(import.meta.dirname, '..', 'src');
  // Every exported class named for an error is one of those checked here.
  for (const path of sources(root)) {
    for (const match of readFileSync(path, 'utf8').matchAll(/export (?:abstract )?class (\w+) extends/g)) {
      const name = match[1] as string;
      if (name.endsWith('Error')) assert.ok(classes.has(name), `${relative(root, path)}: ${name} is not in this test's MODULES`);
    }
  }
  const codes = new Map<string, string>();
  for (const [name, cls] of classes) {
    assert.ok(cls === (AppError as unknown) || cls.prototype instanceof AppError, `${name} is not under AppError`);
    if (cls === (AppError as unknown) || cls === (ProxyError as unknown)) continue; // abstract
    const err = instance(cls) as AppError;
    assert.match(err.code, /^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$/, `${name}.code "${err.code}" is not snake_case`);
    assert.ok(Number.isInteger(err.status) && err.status >= 400 && err.status <= 599, `${name}.status ${err.status}`);
    assert.equal(codes.get(err.code), undefined, `${name} and ${codes.get(err.code)} share the code "${err.code}"`);
    codes.set(err.code, name);
  }
  assert.ok(codes.size >= 25, `only ${codes.size} codes found`);
});

test('describeError gives every proxy error the OpenAI shape, and an unknown error a 500', async () => {
  const classes = await exportedErrors();
  for (const [name, cls] of classes) {
    if (!(cls.prototype instanceof ProxyError)) continue;
    const err = new cls(`${name} happened`) as ProxyError;
    const described = describeError(err);
    assert.equal(described.status, err.status);
    assert.equal(described.errorType, err.code);
    assert.equal(described.outcome, err.outcome);
    assert.deepEqual(JSON.parse(described.body), { error: { message: `${name} happened`, type: err.type, param: null, code: err.code } });
  }
  const unknown = describeError(new TypeError('boom'));
  assert.equal(unknown.status, 500);
  assert.deepEqual(JSON.parse(unknown.body), { error: { message: 'internal proxy error', type: 'server_error', param: null, code: 'proxy_internal_error' } });
});

test("the admin port's errors are the proxy's: 405, 404 and a failed /metrics, OpenAI-shaped", async (t) => {
  const server = createAdminServer({
    health: () => ({}),
    ready: () => ({ ready: true }),
    metrics: { render: () => Promise.reject(new Error('registry broke')) },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const answer = async (path: string, method = 'GET'): Promise<{ status: number; allow: unknown; body: { error: Record<string, unknown> } }> => {
    const res = await request(`${base}${path}`, { method });
    return { status: res.statusCode, allow: res.headers.allow, body: (await res.body.json()) as { error: Record<string, unknown> } };
  };
  const post = await answer('/healthz', 'POST');
  assert.equal(post.status, 405);
  assert.equal(post.allow, 'GET, HEAD');
  assert.deepEqual(Object.keys(post.body.error), ['message', 'type', 'param', 'code']);
  assert.equal(post.body.error.code, 'method_not_allowed');
  const missing = await answer('/nope');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'not_found');
  assert.match(String(missing.body.error.message), /\/healthz, \/readyz, \/metrics/);
  const broken = await answer('/metrics');
  assert.equal(broken.status, 500);
  assert.deepEqual(broken.body.error, { message: 'rendering the metrics failed', type: 'server_error', param: null, code: 'proxy_internal_error' });
});
