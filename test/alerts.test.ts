/**
 * deploy/prometheus/alerts.yml: `promtool check rules` accepts it, `promtool test rules` runs
 * deploy/prometheus/alerts.test.yml (each alert made to fire, and quiet where it must not), every
 * alert says how long, how bad and what, and the compose stack's Prometheus loads the file.
 * The promtool runs are skipped, saying so, where the Debian package `prometheus` is not installed.
 * https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/
 * https://prometheus.io/docs/prometheus/latest/configuration/unit_testing_rules/
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, posix, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { findBinary } from './support/prometheus.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEPLOY = join(ROOT, 'deploy');
const ALERTS = join(DEPLOY, 'prometheus', 'alerts.yml');
const ALERTS_TEST = join(DEPLOY, 'prometheus', 'alerts.test.yml');
const PROMETHEUS_CONFIG = join(DEPLOY, 'prometheus.yml');
const COMPOSE = join(DEPLOY, 'docker-compose.yml');
const PROMTOOL = findBinary('promtool');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface AlertTest {
  eval_time: string;
  alertname: string;
  exp_alerts?: { exp_labels?: Record<string, string> }[] | null;
}
interface TestFile {
  rule_files: string[];
  tests: { alert_rule_test?: AlertTest[] }[];
}
interface PrometheusConfig {
  rule_files?: string[];
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
}
interface Compose {
  services: Record<string, { command?: string | string[]; volumes?: string[] }>;
}

const yaml = <T>(path: string): T => parse(readFileSync(path, 'utf8')) as T;
const alerts = yaml<{ groups: { name: string; rules: Rule[] }[] }>(ALERTS).groups.flatMap((g) => g.rules);

function promtool(args: string[]): { status: number | null; output: string } {
  const run = spawnSync(PROMTOOL as string, args, { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}`.trim() };
}

describe('alerting rules', () => {
  test('promtool check rules accepts deploy/prometheus/alerts.yml', (t) => {
    if (PROMTOOL === null) return t.skip('promtool binary not found');
    const run = promtool(['check', 'rules', ALERTS]);
    t.diagnostic(run.output);
    assert.equal(run.status, 0, run.output);
    assert.match(run.output, new RegExp(`SUCCESS: ${alerts.length} rules found`));
  });

  test('promtool test rules passes deploy/prometheus/alerts.test.yml', (t) => {
    if (PROMTOOL === null) return t.skip('promtool binary not found');
    const run = promtool(['test', 'rules', ALERTS_TEST]);
    t.diagnostic(run.output);
    assert.equal(run.status, 0, run.output);
  });

  test('every alert has a for, a severity, a summary and a description, and a unique name', () => {
    assert.ok(alerts.length > 0);
    const names = alerts.map((r) => r.alert);
    assert.equal(new Set(names).size, names.length, 'alert names are unique');
    for (const rule of alerts) {
      const where = rule.alert ?? `record ${rule.record}`;
      assert.ok(rule.alert !== undefined, `${where}: only alerting rules here`);
      assert.match(rule.for ?? '', /^\d+[smh]$/, `${where}: for`);
      assert.ok(['critical', 'warning'].includes(rule.labels?.severity ?? ''), `${where}: severity ${rule.labels?.severity}`);
      assert.ok((rule.annotations?.summary ?? '') !== '', `${where}: summary`);
      assert.ok((rule.annotations?.description ?? '') !== '', `${where}: description`);
    }
  });

  test('the unit tests load alerts.yml and make every alert both fire and stay quiet', () => {
    const file = yaml<TestFile>(ALERTS_TEST);
    assert.deepEqual(
      file.rule_files.map((f) => resolve(dirname(ALERTS_TEST), f)),
      [ALERTS],
    );
    const cases = file.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const name of alerts.map((r) => r.alert as string)) {
      const mine = cases.filter((c) => c.alertname === name);
      assert.ok(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${name}: a case where it fires`);
      assert.ok(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${name}: a case where it does not fire`);
    }
  });

  test('the proxy-down alert watches the job that scrapes the proxy', () => {
    const config = yaml<PrometheusConfig>(PROMETHEUS_CONFIG);
    const job = config.scrape_configs.find((j) => j.static_configs.some((s) => s.targets.some((target) => target.startsWith('proxy:'))));
    assert.ok(job !== undefined, 'a job scrapes the proxy');
    const down = alerts.find((r) => r.alert === 'OpenAIProxyDown');
    assert.equal(down?.expr, `up{job="${job.job_name}"} == 0`);
  });
});

describe('the compose stack loads the alerts', () => {
  test('deploy/prometheus.yml names alerts.yml in rule_files, and the check of the whole config loads it', (t) => {
    const config = yaml<PrometheusConfig>(PROMETHEUS_CONFIG);
    assert.deepEqual(
      (config.rule_files ?? []).map((f) => resolve(DEPLOY, f)),
      [ALERTS],
    );
    if (PROMTOOL === null) return t.skip('promtool binary not found');
    // Not --syntax-only: the rule files are read and checked through the config.
    const run = promtool(['check', 'config', PROMETHEUS_CONFIG]);
    t.diagnostic(run.output);
    assert.equal(run.status, 0, run.output);
    assert.match(run.output, /SUCCESS: 1 rule files found/);
  });

  test('docker-compose.yml mounts alerts.yml where the mounted prometheus.yml looks for it', () => {
    const prometheus = yaml<Compose>(COMPOSE).services.prometheus;
    const command = [prometheus?.command ?? []].flat().join(' ');
    const configPath = /--config\.file=(\S+)/.exec(command)?.[1];
    assert.ok(configPath !== undefined, 'prometheus runs with --config.file');
    const mounts = new Map((prometheus?.volumes ?? []).map((v) => [v.split(':')[1], v.split(':')[0] as string]));
    assert.equal(mounts.get(configPath), './prometheus.yml');
    const config = yaml<PrometheusConfig>(PROMETHEUS_CONFIG);
    for (const file of config.rule_files ?? []) {
      const inContainer = posix.resolve(posix.dirname(configPath), file);
      const source = mounts.get(inContainer);
      assert.ok(source !== undefined, `${inContainer} is mounted (${[...mounts.keys()].join(', ')})`);
      assert.equal(resolve(DEPLOY, source), ALERTS);
      assert.ok(existsSync(resolve(DEPLOY, source)));
    }
  });
});
