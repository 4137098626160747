/**
 * Limits and request rules of an institution, a virtual key or `defaults`
 * (shared/design/policy-file.md, "Limits" and "Rules"). Rules are only checked for shape here;
 * they are enforced elsewhere.
 */
import {
  type Path,
  type Problems,
  describe,
  list,
  mapping,
  oneOf,
  positiveInteger,
  positiveNumber,
  text,
  textList,
} from './policy-read.ts';
import { LIMIT_KINDS, type Limit, type LimitKind, type Redaction, type Rewrite, type Rules, WINDOWS } from './types.ts';

export const RULE_FIELDS = ['models', 'operations', 'maxBodyBytes', 'record', 'redact', 'rewrites'] as const;
export const BUILTIN_REDACTIONS = ['email', 'phone', 'card', 'iban'] as const;

// RFC 9110 §5.6.2 token: what a header name may be.
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// RFC 9110 §5.5: no CR, LF or NUL in a field value.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// Operation names as records give them (src/capture/operation.ts): `chat.completions`, `audio.speech`.
const OPERATION = /^[a-z][a-z_]*(\.[a-z_]+)*$/;

export function limits(value: unknown, path: Path, problems: Problems): Limit[] {
  const items = list(value, path, problems) ?? [];
  const out: Limit[] = [];
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    const limit = oneLimit(item, [...path, i], problems);
    if (limit === null) return;
    const key = `${limit.window} ${limit.kind}`;
    const first = seen.get(key);
    if (first !== undefined) {
      problems.add([...path, i], `a second ${limit.window} ${limit.kind} limit (the first is [${first}])`);
      return;
    }
    seen.set(key, i);
    out.push(Object.freeze(limit));
  });
  return out;
}

function oneLimit(value: unknown, path: Path, problems: Problems): Limit | null {
  const fields = mapping(value, path, problems, ['window', ...LIMIT_KINDS]);
  if (fields === null) return null;
  const window = fields.window === undefined ? missing(path, 'window', problems) : oneOf(fields.window, [...path, 'window'], problems, WINDOWS);
  const kinds = LIMIT_KINDS.filter((kind) => fields[kind] !== undefined);
  if (kinds.length !== 1) {
    problems.add(path, `expected exactly one of ${LIMIT_KINDS.join(', ')}, got ${kinds.length === 0 ? 'none' : kinds.join(' and ')}`);
    return null;
  }
  const kind = kinds[0] as LimitKind;
  const amount =
    kind === 'costUsd' ? positiveNumber(fields[kind], [...path, kind], problems) : positiveInteger(fields[kind], [...path, kind], problems);
  return window === null || amount === null ? null : { window, kind, limit: amount };
}

function missing(path: Path, field: string, problems: Problems): null {
  problems.add([...path, field], 'is required');
  return null;
}

/** The rule fields of `fields` (a mapping already checked for unknown keys). */
export function rules(fields: Record<string, unknown>, path: Path, problems: Problems): Rules {
  const at = (field: string): Path => [...path, field];
  return Object.freeze({
    models: fields.models === undefined ? null : freezeList(patterns(fields.models, at('models'), problems)),
    operations: fields.operations === undefined ? null : freezeList(operations(fields.operations, at('operations'), problems)),
    maxBodyBytes: fields.maxBodyBytes === undefined ? null : positiveInteger(fields.maxBodyBytes, at('maxBodyBytes'), problems),
    recordBodies: fields.record === undefined ? null : recordBodies(fields.record, at('record'), problems),
    redact: fields.redact === undefined ? null : freezeList(redactions(fields.redact, at('redact'), problems)),
    rewrites: fields.rewrites === undefined ? null : freezeList(rewrites(fields.rewrites, at('rewrites'), problems)),
  });
}

function freezeList<T>(items: T[] | null): readonly T[] | null {
  return items === null ? null : Object.freeze(items);
}

function patterns(value: unknown, path: Path, problems: Problems): string[] | null {
  return textList(value, path, problems);
}

function operations(value: unknown, path: Path, problems: Problems): string[] | null {
  const names = textList(value, path, problems);
  if (names === null) return null;
  let ok = true;
  names.forEach((name, i) => {
    if (OPERATION.test(name)) return;
    problems.add([...path, i], `${describe(name)} is not an operation name as records give it (e.g. chat.completions, embeddings)`);
    ok = false;
  });
  return ok ? names : null;
}

function recordBodies(value: unknown, path: Path, problems: Problems): 'full' | 'none' | null {
  const fields = mapping(value, path, problems, ['bodies']);
  if (fields === null) return null;
  if (fields.bodies === undefined) return missing(path, 'bodies', problems);
  return oneOf(fields.bodies, [...path, 'bodies'], problems, ['full', 'none'] as const);
}

function redactions(value: unknown, path: Path, problems: Problems): Redaction[] | null {
  const entries = textList(value, path, problems);
  if (entries === null) return null;
  const out: Redaction[] = [];
  entries.forEach((entry, i) => {
    if ((BUILTIN_REDACTIONS as readonly string[]).includes(entry)) {
      out.push(Object.freeze({ kind: 'builtin', name: entry }));
      return;
    }
    let pattern: RegExp;
    try {
      pattern = new RegExp(entry, 'g');
    } catch (err) {
      const reason = (err as Error).message;
      problems.add([...path, i], `${describe(entry)} is not a built-in (${BUILTIN_REDACTIONS.join(', ')}) nor a valid regular expression: ${reason}`);
      return;
    }
    // A pattern that matches nothing at all would redact between every character.
    if (pattern.test('')) problems.add([...path, i], `${describe(entry)} matches the empty string`);
    else out.push(Object.freeze({ kind: 'regex', source: entry }));
  });
  return out.length === entries.length ? out : null;
}

const REWRITE_KINDS = ['model', 'param', 'path', 'header'] as const;

function rewrites(value: unknown, path: Path, problems: Problems): Rewrite[] | null {
  const items = list(value, path, problems);
  if (items === null) return null;
  const out: Rewrite[] = [];
  items.forEach((item, i) => {
    const rewrite = oneRewrite(item, [...path, i], problems);
    if (rewrite !== null) out.push(Object.freeze(rewrite));
  });
  return out.length === items.length ? out : null;
}

function oneRewrite(value: unknown, path: Path, problems: Problems): Rewrite | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    problems.add(path, `expected a mapping, got ${describe(value)}`);
    return null;
  }
  const kinds = REWRITE_KINDS.filter((kind) => kind in value);
  if (kinds.length !== 1) {
    problems.add(path, `expected exactly one of ${REWRITE_KINDS.join(', ')}, got ${kinds.length === 0 ? 'none' : kinds.join(' and ')}`);
    return null;
  }
  const kind = kinds[0] as (typeof REWRITE_KINDS)[number];
  const at = (field: string): Path => [...path, field];
  const filters = (fields: Record<string, unknown>): { models: string[] | null; operations: string[] | null } => ({
    models: fields.models === undefined ? null : patterns(fields.models, at('models'), problems),
    operations: fields.operations === undefined ? null : operations(fields.operations, at('operations'), problems),
  });
  const before = problems.list.length;
  switch (kind) {
    case 'model': {
      const fields = mapping(value, path, problems, ['model', 'to', 'operations']) as Record<string, unknown>;
      const from = text(fields.model, at('model'), problems);
      const to = text(fields.to, at('to'), problems);
      const { operations: ops } = filters(fields);
      return problems.list.length > before ? null : { kind, from: from as string, to: to as string, operations: ops };
    }
    case 'param': {
      const fields = mapping(value, path, problems, ['param', 'to', 'models', 'operations']) as Record<string, unknown>;
      const from = text(fields.param, at('param'), problems);
      const to = text(fields.to, at('to'), problems);
      const { models, operations: ops } = filters(fields);
      return problems.list.length > before ? null : { kind, from: from as string, to: to as string, models, operations: ops };
    }
    case 'path': {
      const fields = mapping(value, path, problems, ['path', 'to']) as Record<string, unknown>;
      const from = pathTemplate(fields.path, at('path'), problems);
      const to = pathTemplate(fields.to, at('to'), problems);
      const unbound = placeholders(to).filter((name) => !placeholders(from).includes(name));
      if (unbound.length > 0) problems.add(at('to'), `{${unbound.join('}, {')}} is not a placeholder of path`);
      return problems.list.length > before ? null : { kind, from: from as string, to: to as string };
    }
    case 'header': {
      const fields = mapping(value, path, problems, ['header', 'value', 'models', 'operations']) as Record<string, unknown>;
      const name = text(fields.header, at('header'), problems);
      if (name !== null && !HEADER_NAME.test(name)) problems.add(at('header'), `${describe(name)} is not a valid header name`);
      const headerValue = fields.value;
      if (typeof headerValue !== 'string' || !HEADER_VALUE.test(headerValue)) {
        problems.add(at('value'), `expected a header value (a string without line breaks), got ${describe(headerValue)}`);
      }
      const { models, operations: ops } = filters(fields);
      return problems.list.length > before
        ? null
        : { kind, name: (name as string).toLowerCase(), value: headerValue as string, models, operations: ops };
    }
  }
}

function placeholders(template: string | null): string[] {
  return template === null ? [] : [...template.matchAll(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g)].map((m) => m[1] as string);
}

/** `/v1/engines/{engine}/completions`: starts with `/`, placeholders are `{word}`. */
function pathTemplate(value: unknown, path: Path, problems: Problems): string | null {
  const template = text(value, path, problems);
  if (template === null) return null;
  const stripped = template.replace(/\{[A-Za-z_][A-Za-z0-9_]*\}/g, 'x');
  if (!template.startsWith('/') || /[{}?#\s]/.test(stripped)) {
    problems.add(path, `${describe(template)} is not a path template (it starts with / and may hold {name} placeholders, no query)`);
    return null;
  }
  return template;
}
