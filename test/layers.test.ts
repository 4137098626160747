/**
 * The import rules between the layers of src/ (eslint.layers.js, part of eslint.config.js): a bent
 * arrow in any folder is reported, so `npm run lint` and this test fail on it; the arrows allowed
 * stay quiet. Runs ESLint's Node API on fixture sources placed (in name only) in each folder.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import { layers } from '../eslint.layers.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const RULE = '@typescript-eslint/no-restricted-imports';

// Only the layer rules: they need no type information, so the fixtures need not exist on disk.
const eslint = new ESLint({
  cwd: ROOT,
  overrideConfigFile: true,
  overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser }, plugins: { '@typescript-eslint': tseslint.plugin } }, ...layers],
});

async function reported(file: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: join(ROOT, file) });
  assert.ok(result !== undefined);
  const fatal = result.messages.filter((m) => m.fatal === true);
  assert.deepEqual(fatal, [], `${file} parses`);
  return result.messages.filter((m) => m.ruleId === RULE).map((m) => m.message);
}

const BENT: Array<[file: string, source: string]> = [
  ['src/proxy/fixture.ts', "import type { AuditRecord } from '../audit/record/record.ts';"],
  ['src/proxy/fixture.ts', "import { BodyCapture } from '../capture/body-capture.ts';"],
  ['src/proxy/fixture.ts', "import { ProxyMetrics } from '../telemetry/metrics.ts';"],
  ['src/proxy/fixture.ts', "import { resolveIdentity } from '../policy/identity.ts';"],
  ['src/proxy/fixture.ts', "import { main } from '../cli/main.ts';"],
  ['src/proxy/fixture.ts', "import { createRuntime } from '../runtime.ts';"],
  ['src/proxy/fixture.ts', "import { startProxy } from '../app.ts';"],
  ['src/proxy/fixture.ts', "import { trace } from '@opentelemetry/api';"],
  ['src/proxy/fixture.ts', "import { Counter } from 'prom-client';"],
  ['src/proxy/fixture.ts', "import { MongoClient } from 'mongodb';"],
  ['src/capture/fixture.ts', "import type { AuditRecord } from '../audit/record/record.ts';"],
  ['src/capture/fixture.ts', "import { Tracing } from '../telemetry/tracing.ts';"],
  ['src/capture/fixture.ts', "import type { Policy } from '../policy/types.ts';"],
  ['src/capture/fixture.ts', "import { Histogram } from 'prom-client';"],
  ['src/capture/fixture.ts', "import { EJSON } from 'bson';"],
  ['src/telemetry/fixture.ts', "import type { AuditRecord } from '../audit/record/record.ts';"],
  ['src/telemetry/fixture.ts', "import { MongoClient } from 'mongodb';"],
  ['src/audit/record/fixture.ts', "import { ProxyMetrics } from '../../telemetry/metrics.ts';"],
  ['src/audit/journal/fixture.ts', "import { tracingOf } from '../../telemetry/tracing.ts';"],
  ['src/audit/record/fixture.ts', "import { Counter } from 'prom-client';"],
  ['src/audit/record/fixture.ts', "import { context } from '@opentelemetry/api';"],
  ['src/audit/record/recorder.ts', "import { EJSON } from 'bson';"],
  ['src/audit/journal/journal.ts', "import { MongoClient } from 'mongodb';"],
  ['src/audit/journal/journal-line.ts', "import { MongoClient } from 'mongodb';"],
  ['src/audit/shipper/mongo.ts', "import { trace } from '@opentelemetry/api';"],
  ['src/audit/shipper/mongo.ts', "import { ProxyMetrics } from '../../telemetry/metrics.ts';"],
  ['src/policy/fixture.ts', "import { ProxyMetrics } from '../telemetry/metrics.ts';"],
  ['src/policy/fixture.ts', "import { fingerprint } from '../audit/record/identity.ts';"],
  ['src/policy/fixture.ts', "import { MongoClient } from 'mongodb';"],
  ['src/policy/quota-store-mongo.ts', "import { Recorder } from '../audit/record/recorder.ts';"],
  ['src/fixture.ts', "import { MongoClient } from 'mongodb';"],
  ['src/cli/fixture.ts', "import { EJSON } from 'bson';"],
];

test('a bent import in each folder is reported', async () => {
  for (const [file, source] of BENT) {
    const messages = await reported(file, `${source}\n`);
    assert.equal(messages.length, 1, `${file}: ${source} is reported`);
  }
});

test('the arrows the layers allow are not reported', async () => {
  const allowed: Array<[string, string]> = [
    ['src/proxy/fixture.ts', "import { ProxyError } from './errors.ts';\nimport { request } from 'undici';"],
    ['src/capture/fixture.ts', "import type { Exchange } from '../proxy/observer.ts';\nimport { UNBOUNDED } from '../memory-budget.ts';"],
    ['src/telemetry/fixture.ts', "import type { ExchangeFacts } from '../capture/facts.ts';\nimport { Counter } from 'prom-client';\nimport { trace } from '@opentelemetry/api';"],
    ['src/audit/record/fixture.ts', "import type { ExchangeFacts } from '../../capture/facts.ts';\nimport type { Exchange } from '../../proxy/observer.ts';\nimport { log } from '../../log.ts';"],
    ['src/audit/shipper/fixture.ts', "import { segmentSequence } from '../journal/journal.ts';\nimport { AppError } from '../../errors.ts';"],
    ['src/audit/shipper/mongo.ts', "import { MongoClient } from 'mongodb';"],
    ['src/audit/shipper/shipper-reader.ts', "import { EJSON } from 'bson';"],
    ['src/audit/journal/journal-line.ts', "import { EJSON } from 'bson';"],
    ['src/policy/fixture.ts', "import { fingerprint } from '../fingerprint.ts';"],
    ['src/policy/quota-store-mongo.ts', "import { MongoClient } from 'mongodb';\nimport type { Usage } from './limits-counters.ts';"],
    ['src/runtime.ts', "import { Recorder } from './audit/record/recorder.ts';\nimport { ProxyMetrics } from './telemetry/metrics.ts';"],
  ];
  for (const [file, source] of allowed) assert.deepEqual(await reported(file, `${source}\n`), [], `${file}: ${source}`);
});

test('eslint.config.js applies the layer rules to the files of each folder', async () => {
  const project = new ESLint({ cwd: ROOT });
  const files: Record<string, string> = {
    'layers/src': 'src/log.ts',
    'layers/proxy': 'src/proxy/observer.ts',
    'layers/capture': 'src/capture/facts.ts',
    'layers/telemetry': 'src/telemetry/metrics.ts',
    'layers/audit': 'src/audit/journal/journal.ts',
    'layers/audit-shipper': 'src/audit/shipper/mongo.ts',
    'layers/audit-journal-line': 'src/audit/journal/journal-line.ts',
    'layers/policy': 'src/policy/cost.ts',
    'layers/policy-quota-store': 'src/policy/quota-store-mongo.ts',
  };
  for (const layer of layers) {
    const file = files[layer.name];
    assert.ok(file !== undefined, `a file for ${layer.name}`);
    const resolved = (await project.calculateConfigForFile(join(ROOT, file))) as Linter.Config;
    const [severity, ...options] = resolved.rules?.[RULE] as [unknown, ...unknown[]];
    assert.equal(severity, 2, `${file}: an error`);
    assert.deepEqual(options, (layer.rules?.[RULE] as unknown[]).slice(1), `${file} gets ${layer.name}`);
  }
});
