/**
 * Reads POLICY_FILE (YAML for .yaml/.yml, JSON for .json) into a Policy, or throws a
 * PolicyFileError whose lines each name the file and the place in it:
 * `policy.yaml: institutions.acme.limits[1].window: "weekly" is not one of minute, hour, day, month (line 12)`.
 */
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { type Document, LineCounter, parseDocument } from 'yaml';
import { log } from '../log.ts';
import { mergeLegacyInstitutions } from './legacy-institutions.ts';
import { type Path, formatPath } from './policy-read.ts';
import { type Env, buildPolicy } from './policy-schema.ts';
import type { Policy } from './types.ts';
import { AppError } from '../errors.ts';

export type { Env } from './policy-schema.ts';

export interface LoadOptions {
  env: Env;
  /** INSTITUTION_HEADER: the header's name when the file does not give one. */
  defaultInstitutionHeader?: string;
  /** INSTITUTIONS_FILE's map, merged into the institutions' `keys`. */
  legacyInstitutions?: ReadonlyMap<string, string>;
  /** When the policy counts as loaded (tests pass a fixed one). */
  now?: () => Date;
}

export class PolicyFileError extends AppError {
  readonly code = 'policy_invalid';
  /** A reload that fails keeps the last good policy; at start it stops the proxy. */
  readonly status = 500;
  /** One line per problem, each starting with the file's path. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(problems.join('; '));
    this.name = 'PolicyFileError';
    this.problems = problems;
  }
}

export type PolicyFormat = 'yaml' | 'json';

export function policyFormat(path: string): PolicyFormat | null {
  const ext = extname(path).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') return 'yaml';
  if (ext === '.json') return 'json';
  return null;
}

/** Reads and checks the file; throws PolicyFileError with every problem found. */
export function loadPolicy(path: string, options: LoadOptions): Policy {
  const format = policyFormat(path);
  if (format === null) throw new PolicyFileError([`${path}: expected a .yaml, .yml or .json file`]);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw new PolicyFileError([`${path}: cannot read: ${(err as Error).message}`]);
  }
  return parsePolicy(bytes, path, format, options);
}

export function parsePolicy(bytes: Buffer, path: string, format: PolicyFormat, options: LoadOptions): Policy {
  const parsed = format === 'yaml' ? parseYaml(bytes, path) : parseJson(bytes, path);
  const source = { path, sha256: hash('sha256', bytes, 'hex'), loadedAt: (options.now ?? (() => new Date()))() };
  const result = buildPolicy(
    parsed.tree,
    { env: options.env, baseDir: dirname(path), defaultInstitutionHeader: options.defaultInstitutionHeader ?? 'x-institution-id' },
    source,
  );
  if (result.problems !== undefined) {
    const located = result.problems.map((p) => ({ ...p, line: parsed.lineOf(p.path) }));
    // In the order of the file, so the operator can fix them top to bottom.
    located.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    throw new PolicyFileError(
      located.map((p) => {
        const place = p.path.length === 0 ? '' : `${formatPath(p.path)}: `;
        return `${path}: ${place}${p.message}${p.line === null ? '' : ` (line ${p.line})`}`;
      }),
    );
  }
  if (options.legacyInstitutions === undefined) return result.policy;
  const { policy, shadowed } = mergeLegacyInstitutions(result.policy, options.legacyInstitutions);
  if (shadowed.length > 0) {
    log.warn('INSTITUTIONS_FILE entries ignored: the policy file assigns these keys', { path, fingerprints: shadowed });
  }
  return policy;
}

interface Parsed {
  tree: unknown;
  lineOf: (path: Path) => number | null;
}

function parseYaml(bytes: Buffer, path: string): Parsed {
  const lineCounter = new LineCounter();
  const doc = parseDocument(bytes.toString('utf8'), { lineCounter, prettyErrors: false, uniqueKeys: true });
  const first = doc.errors[0];
  if (first !== undefined) {
    // One mistake often derails the parser for the rest of the file: its first error is the one to fix.
    const more = doc.errors.length > 1 ? ` (and ${doc.errors.length - 1} more after it)` : '';
    const message = first.message.split('\n')[0] ?? '';
    throw new PolicyFileError([`${path}: malformed YAML at line ${lineCounter.linePos(first.pos[0]).line}: ${message}${more}`]);
  }
  let tree: unknown;
  try {
    tree = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    throw new PolicyFileError([`${path}: malformed YAML: ${(err as Error).message}`]);
  }
  return { tree, lineOf: (p) => yamlLine(doc, lineCounter, p) };
}

/** The line of the deepest node of `path` that exists (a missing field is reported on its parent's line). */
function yamlLine(doc: Document, lineCounter: LineCounter, path: Path): number | null {
  for (let depth = path.length; depth > 0; depth--) {
    const node = doc.getIn(path.slice(0, depth), true) as { range?: [number, number, number] } | undefined;
    if (node?.range !== undefined) return lineCounter.linePos(node.range[0]).line;
  }
  return null;
}

function parseJson(bytes: Buffer, path: string): Parsed {
  // JSON.parse refuses the byte-order mark some editors write.
  const text = bytes.toString('utf8').replace(/^\uFEFF/, '');
  try {
    return { tree: JSON.parse(text) as unknown, lineOf: () => null };
  } catch (err) {
    throw new PolicyFileError([`${path}: malformed JSON: ${(err as Error).message}`]);
  }
}
