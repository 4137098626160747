/**
 * Small checkers for the policy file's parsed tree. Each takes the place in the file as a path
 * (`['institutions', 'acme', 'limits', 1, 'window']`) and records what is wrong there instead
 * of throwing, so one pass reports every problem in the file.
 */
import { didYouMean } from './did-you-mean.ts';

export type PathSegment = string | number;
export type Path = readonly PathSegment[];

export interface Problem {
  readonly path: Path;
  readonly message: string;
}

export class Problems {
  readonly list: Problem[] = [];

  add(path: Path, message: string): void {
    this.list.push({ path, message });
  }
}

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `institutions.acme.limits[1].window`; keys that are not plain words are quoted: `prices["ft:gpt-4o"]`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (PLAIN_KEY.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** A value as the message quotes it; anything that looks like an API key is never echoed. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') {
    if (/^sk-/.test(value)) return 'an API key (not shown; the file holds fingerprints, never keys)';
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  }
  return typeof value === 'number' || typeof value === 'boolean' ? String(value) : typeof value;
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A mapping whose keys are all among `allowed`; an unknown key is reported with the closest
 * known one. Null (after reporting) when `value` is not a mapping.
 */
export function mapping(value: unknown, path: Path, problems: Problems, allowed: readonly string[]): Record<string, unknown> | null {
  if (!isMapping(value)) {
    problems.add(path, `expected a mapping, got ${describe(value)}`);
    return null;
  }
  for (const key of Object.keys(value)) {
    if (allowed.includes(key)) continue;
    const near = didYouMean(key, allowed);
    const hint = near === null ? `known fields: ${allowed.join(', ')}` : `did you mean "${near}"?`;
    problems.add([...path, key], `unknown field; ${hint}`);
  }
  return value;
}

export function list(value: unknown, path: Path, problems: Problems): unknown[] | null {
  if (Array.isArray(value)) return value as unknown[];
  problems.add(path, `expected a list, got ${describe(value)}`);
  return null;
}

export function text(value: unknown, path: Path, problems: Problems): string | null {
  if (typeof value === 'string' && value.trim() !== '') return value;
  problems.add(path, `expected a non-empty string, got ${describe(value)}`);
  return null;
}

export function textList(value: unknown, path: Path, problems: Problems): string[] | null {
  const items = list(value, path, problems);
  if (items === null) return null;
  const out: string[] = [];
  items.forEach((item, i) => {
    const s = text(item, [...path, i], problems);
    if (s !== null) out.push(s);
  });
  return out.length === items.length ? out : null;
}

export function flag(value: unknown, path: Path, problems: Problems): boolean | null {
  if (typeof value === 'boolean') return value;
  problems.add(path, `expected true or false, got ${describe(value)}`);
  return null;
}

export function oneOf<T extends string>(value: unknown, path: Path, problems: Problems, allowed: readonly T[]): T | null {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  const near = typeof value === 'string' ? didYouMean(value, allowed) : null;
  problems.add(path, `${describe(value)} is not one of ${allowed.join(', ')}${near === null ? '' : ` (did you mean "${near}"?)`}`);
  return null;
}

export function positiveNumber(value: unknown, path: Path, problems: Problems): number | null {
  if (typeof value === 'number' && Number.isFinite(value) && value > 0) return value;
  problems.add(path, `expected a number greater than 0, got ${describe(value)}`);
  return null;
}

export function positiveInteger(value: unknown, path: Path, problems: Problems): number | null {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value > 0) return value;
  problems.add(path, `expected a whole number greater than 0, got ${describe(value)}`);
  return null;
}
