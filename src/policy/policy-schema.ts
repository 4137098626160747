/**
 * The policy file's parsed tree -> a frozen Policy, or every problem found, each at its place
 * in the file (shared/design/policy-file.md, version 1). `upstreamKey` references are resolved
 * here, from the environment given and from files, so a missing secret is a problem of the file.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { AddressSet, addressProblem } from './address-set.ts';
import {
  type Path,
  type Problem,
  Problems,
  describe,
  flag,
  formatPath,
  isMapping,
  list,
  mapping,
  oneOf,
  text,
} from './policy-read.ts';
import { HEADER_NAME, RULE_FIELDS, limits, rules } from './policy-rules.ts';
import { parseModelPrice, PriceError, type ModelPrice } from './prices.ts';
import type { Institution, Policy, PolicySource, Rules, VirtualKey } from './types.ts';
import { UpstreamKey } from './upstream-key.ts';
import { isProxyIssued } from './virtual-key-format.ts';

export type Env = Readonly<Record<string, string | undefined>>;

export interface SchemaOptions {
  /** Where `upstreamKey: { env }` is looked up (config.ts's snapshot, never process.env here). */
  env: Env;
  /** `upstreamKey: { file }` paths that are relative are taken from here (the policy file's directory). */
  baseDir: string;
  /** The header's name when the file has no `institutionHeader.name` (INSTITUTION_HEADER). */
  defaultInstitutionHeader: string;
}

const TOP_FIELDS = [
  'version',
  'virtualKeys',
  'institutions',
  'institutionHeader',
  'requireInstitution',
  'defaults',
  'quotaStoreDown',
  'prices',
] as const;
const VIRTUAL_KEY_FIELDS = ['fingerprint', 'institution', 'upstreamKey', 'limits', 'disabled'];
const INSTITUTION_FIELDS = ['keys', 'limits', ...RULE_FIELDS];
const DEFAULTS_FIELDS = ['limits', ...RULE_FIELDS];

export const FINGERPRINT = /^sha256:[0-9a-f]{16}$/;
/** Institution names end up in records and metric labels: 1 to 128 characters on one line, no surrounding spaces. */
export function isInstitutionName(name: string): boolean {
  if (name.length === 0 || name.length > 128 || name.trim() !== name) return false;
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return false;
  }
  return true;
}
const NAME_PROBLEM = (name: string): string =>
  `${describe(name)} is not a usable institution name (1 to 128 characters on one line, no surrounding spaces)`;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// An OpenAI key goes into a header and a subprotocol token: visible ASCII, no spaces.
const KEY_VALUE = /^[\x21-\x7e]+$/;
// Headers whose value is a secret or that the proxy itself needs as sent.
const RESERVED_HEADERS = new Set(['authorization', 'api-key', 'openai-api-key', 'cookie', 'host', 'sec-websocket-protocol']);

export type SchemaResult = { policy: Policy; problems?: undefined } | { policy?: undefined; problems: readonly Problem[] };

export function buildPolicy(tree: unknown, options: SchemaOptions, source: PolicySource): SchemaResult {
  const problems = new Problems();
  const top = mapping(tree, [], problems, TOP_FIELDS);
  if (top === null) return { problems: problems.list };

  if (top.version === undefined) problems.add(['version'], 'is required (this proxy reads version 1)');
  else if (top.version !== 1) problems.add(['version'], `${describe(top.version)} is not supported (this proxy reads version 1)`);

  const fingerprints = new Map<string, Path>();
  const claim = (fingerprint: string, path: Path): boolean => {
    const first = fingerprints.get(fingerprint);
    if (first !== undefined) {
      problems.add(path, `${fingerprint} is already listed at ${formatPath(first)}`);
      return false;
    }
    fingerprints.set(fingerprint, path);
    return true;
  };

  const virtualKeys = new Map<string, VirtualKey>();
  if (top.virtualKeys !== undefined) {
    (list(top.virtualKeys, ['virtualKeys'], problems) ?? []).forEach((entry, i) => {
      const key = virtualKey(entry, ['virtualKeys', i], problems, options);
      if (key !== null && claim(key.fingerprint, ['virtualKeys', i, 'fingerprint'])) virtualKeys.set(key.fingerprint, key);
    });
  }

  const institutions = new Map<string, Institution>();
  const keyInstitutions = new Map<string, string>();
  if (top.institutions !== undefined) {
    const all = isMapping(top.institutions) ? top.institutions : {};
    if (!isMapping(top.institutions)) problems.add(['institutions'], `expected a mapping of institution name to entry, got ${describe(top.institutions)}`);
    for (const [name, value] of Object.entries(all)) {
      const path = ['institutions', name];
      if (!isInstitutionName(name)) problems.add(path, NAME_PROBLEM(name));
      const institution = institutionEntry(name, value ?? {}, path, problems, claim);
      for (const fingerprint of institution.keys) keyInstitutions.set(fingerprint, name);
      institutions.set(name, institution);
    }
  }

  const header = institutionHeader(top.institutionHeader, problems, options);
  const requireInstitution = top.requireInstitution === undefined ? false : flag(top.requireInstitution, ['requireInstitution'], problems);
  const defaults = defaultsEntry(top.defaults, problems);
  const quotaStoreDown = top.quotaStoreDown === undefined ? 'open' : oneOf(top.quotaStoreDown, ['quotaStoreDown'], problems, ['open', 'closed'] as const);
  const prices = top.prices === undefined ? new Map<string, ModelPrice>() : priceTable(top.prices, problems);

  if (problems.list.length > 0) return { problems: problems.list };
  return {
    policy: Object.freeze({
      version: 1,
      virtualKeys,
      institutions,
      keyInstitutions,
      institutionHeader: header,
      requireInstitution: requireInstitution as boolean,
      defaults,
      quotaStoreDown: quotaStoreDown as 'open' | 'closed',
      prices,
      source: Object.freeze({ ...source }),
    }),
  };
}

function fingerprint(value: unknown, path: Path, problems: Problems): string | null {
  if (typeof value === 'string' && FINGERPRINT.test(value)) return value;
  problems.add(path, `${describe(value)} is not a key fingerprint (sha256: and 16 lower-case hex digits; \`openai-api-proxy keys new\` prints one)`);
  return null;
}

function virtualKey(value: unknown, path: Path, problems: Problems, options: SchemaOptions): VirtualKey | null {
  const fields = mapping(value, path, problems, VIRTUAL_KEY_FIELDS);
  if (fields === null) return null;
  const before = problems.list.length;
  const at = (field: string): Path => [...path, field];
  const print = fields.fingerprint === undefined ? required(at('fingerprint'), problems) : fingerprint(fields.fingerprint, at('fingerprint'), problems);
  const institution = fields.institution === undefined ? required(at('institution'), problems) : text(fields.institution, at('institution'), problems);
  if (institution !== null && !isInstitutionName(institution)) problems.add(at('institution'), NAME_PROBLEM(institution));
  const disabled = fields.disabled === undefined ? false : flag(fields.disabled, at('disabled'), problems);
  const keyLimits = fields.limits === undefined ? [] : limits(fields.limits, at('limits'), problems);
  // A revoked key's secret may be gone already; it is never used, so only its shape is checked.
  const upstreamKey =
    fields.upstreamKey === undefined
      ? required(at('upstreamKey'), problems)
      : upstreamKeyEntry(fields.upstreamKey, at('upstreamKey'), problems, disabled === true ? null : options);
  if (problems.list.length > before) return null;
  return Object.freeze({
    fingerprint: print as string,
    institution: institution as string,
    upstreamKey,
    limits: Object.freeze(keyLimits),
    disabled: disabled as boolean,
  });
}

function required(path: Path, problems: Problems): null {
  problems.add(path, 'is required');
  return null;
}

/** The key `value` points to; with `options` null (a disabled entry) only the reference is checked. */
function upstreamKeyEntry(value: unknown, path: Path, problems: Problems, options: SchemaOptions | null): UpstreamKey | null {
  const fields = mapping(value, path, problems, ['env', 'file']);
  if (fields === null) return null;
  if ((fields.env === undefined) === (fields.file === undefined)) {
    problems.add(path, 'expected exactly one of env (a variable name) or file (a path)');
    return null;
  }
  let secret: string | null;
  let source: { env: string } | { file: string };
  if (fields.env !== undefined) {
    const name = fields.env;
    if (typeof name !== 'string' || !ENV_NAME.test(name)) {
      problems.add([...path, 'env'], `${describe(name)} is not an environment variable name`);
      return null;
    }
    if (options === null) return null;
    source = { env: name };
    secret = options.env[name]?.trim() ?? '';
    if (secret === '') {
      problems.add([...path, 'env'], `environment variable ${name} is not set (or is empty)`);
      return null;
    }
  } else {
    const file = text(fields.file, [...path, 'file'], problems);
    if (file === null || options === null) return null;
    source = { file };
    try {
      secret = readFileSync(isAbsolute(file) ? file : resolve(options.baseDir, file), 'utf8').trim();
    } catch (err) {
      // Not the system's message: it repeats the path, which may be a key pasted in the wrong place.
      problems.add([...path, 'file'], `cannot read ${describe(file)} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
      return null;
    }
    if (secret === '') {
      problems.add([...path, 'file'], `"${file}" is empty`);
      return null;
    }
  }
  const where: Path = [...path, 'env' in source ? 'env' : 'file'];
  // The secret itself is never quoted in a message.
  if (!KEY_VALUE.test(secret)) {
    problems.add(where, 'the key found there holds spaces or control characters (it must fit in a header)');
    return null;
  }
  if (isProxyIssued(secret)) {
    problems.add(where, 'the key found there is one this proxy issued, not an OpenAI key');
    return null;
  }
  return new UpstreamKey(secret, source);
}

/** `claim` reports a fingerprint already listed elsewhere (a key belongs to one institution). */
function institutionEntry(
  name: string,
  value: unknown,
  path: Path,
  problems: Problems,
  claim: (fingerprint: string, path: Path) => boolean,
): Institution {
  const fields = mapping(value, path, problems, INSTITUTION_FIELDS) ?? {};
  const keys: string[] = [];
  if (fields.keys !== undefined) {
    (list(fields.keys, [...path, 'keys'], problems) ?? []).forEach((item, k) => {
      const print = fingerprint(item, [...path, 'keys', k], problems);
      if (print !== null && claim(print, [...path, 'keys', k])) keys.push(print);
    });
  }
  return Object.freeze({
    name,
    keys: Object.freeze(keys),
    limits: fields.limits === undefined ? null : Object.freeze(limits(fields.limits, [...path, 'limits'], problems)),
    rules: rules(fields, path, problems),
  });
}

function defaultsEntry(value: unknown, problems: Problems): Policy['defaults'] {
  const fields = value === undefined ? {} : (mapping(value, ['defaults'], problems, DEFAULTS_FIELDS) ?? {});
  const defaultRules: Rules = rules(fields, ['defaults'], problems);
  const defaultLimits = fields.limits === undefined ? [] : limits(fields.limits, ['defaults', 'limits'], problems);
  return Object.freeze({ limits: Object.freeze(defaultLimits), rules: defaultRules });
}

function institutionHeader(value: unknown, problems: Problems, options: SchemaOptions): Policy['institutionHeader'] {
  const path = ['institutionHeader'];
  const fields = value === undefined ? {} : (mapping(value, path, problems, ['name', 'trustedFrom']) ?? {});
  let name = options.defaultInstitutionHeader.toLowerCase();
  if (fields.name !== undefined) {
    const given = text(fields.name, [...path, 'name'], problems);
    if (given !== null && !HEADER_NAME.test(given)) problems.add([...path, 'name'], `${describe(given)} is not a valid header name`);
    else if (given !== null && RESERVED_HEADERS.has(given.toLowerCase())) {
      problems.add([...path, 'name'], `${describe(given)} carries credentials or the request itself; choose another header`);
    } else if (given !== null) name = given.toLowerCase();
  }
  const entries: string[] = [];
  if (fields.trustedFrom !== undefined) {
    (list(fields.trustedFrom, [...path, 'trustedFrom'], problems) ?? []).forEach((entry, i) => {
      const at = [...path, 'trustedFrom', i];
      if (typeof entry !== 'string') {
        problems.add(at, `expected an address or CIDR block, got ${describe(entry)}`);
        return;
      }
      const problem = addressProblem(entry.trim());
      if (problem === null) entries.push(entry.trim());
      else problems.add(at, problem);
    });
  }
  return Object.freeze({ name, trustedFrom: new AddressSet(entries) });
}

// One vocabulary for prices: each entry is read by prices.ts, as the shipped table is. Its error
// names the field inside the entry (`.input`, `.images.hd`), which is put back at its place in the file.
const ENTRY = '<entry>';
const FIELD_PATH = /^<entry>((?:\.[A-Za-z0-9_-]+)*): ([\s\S]*)$/;

function priceTable(value: unknown, problems: Problems): ReadonlyMap<string, ModelPrice> {
  const table = new Map<string, ModelPrice>();
  if (!isMapping(value)) {
    problems.add(['prices'], `expected a mapping of model to prices, got ${describe(value)}`);
    return table;
  }
  for (const [model, entry] of Object.entries(value)) {
    const path = ['prices', model];
    if (model.trim() === '') {
      problems.add(path, 'is not a model name');
      continue;
    }
    try {
      table.set(model.toLowerCase(), Object.freeze(parseModelPrice(entry, ENTRY)));
    } catch (err) {
      if (!(err instanceof PriceError)) throw err;
      const located = FIELD_PATH.exec(err.message);
      if (located === null) problems.add(path, err.message.replace(ENTRY, ''));
      else problems.add([...path, ...(located[1] ?? '').split('.').slice(1)], located[2] ?? '');
    }
  }
  return table;
}
