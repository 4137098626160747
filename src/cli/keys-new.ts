/**
 * `openai-api-proxy keys new --institution acme [--env VAR | --file PATH]`: makes a virtual key,
 * prints it this once, and prints the `virtualKeys` entry (its fingerprint, never the key) to
 * paste into the policy file. Nothing is stored: revoking the key is deleting or disabling that entry.
 */
import { stringify } from 'yaml';
import { fingerprint } from '../fingerprint.ts';
import { isInstitutionName } from '../policy/policy-schema.ts';
import { newVirtualKey } from '../policy/virtual-key-format.ts';
import { UsageError } from './usage.ts';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface KeysNewOptions {
  institution?: string | undefined;
  env?: string | undefined;
  file?: string | undefined;
}

export function keysNew(options: KeysNewOptions): string {
  const institution = options.institution;
  if (institution === undefined) throw new UsageError('keys new: --institution is required');
  if (!isInstitutionName(institution)) {
    throw new UsageError(`keys new: "${institution}" is not a usable institution name (1 to 128 characters on one line, no surrounding spaces)`);
  }
  if (options.env !== undefined && options.file !== undefined) throw new UsageError('keys new: give --env or --file, not both');
  let upstreamKey: { env: string } | { file: string };
  if (options.file !== undefined) {
    if (options.file.trim() === '') throw new UsageError('keys new: --file needs a path');
    upstreamKey = { file: options.file };
  } else {
    const env = options.env ?? defaultEnvName(institution);
    if (env === null) throw new UsageError(`keys new: no variable name can be made from "${institution}"; give one with --env`);
    if (!ENV_NAME.test(env)) throw new UsageError(`keys new: "${env}" is not an environment variable name`);
    upstreamKey = { env };
  }
  const key = newVirtualKey();
  const entry = stringify([{ fingerprint: fingerprint(key), institution, upstreamKey }]).trimEnd();
  const where = 'env' in upstreamKey ? `set ${upstreamKey.env} in the proxy's environment` : `put it in ${upstreamKey.file}`;
  return [
    `# A new virtual key for ${JSON.stringify(institution)}. It is shown this once; the proxy keeps only its fingerprint.`,
    key,
    '',
    '# Add this entry under `virtualKeys:` in the policy file (POLICY_FILE). Requests with the key are',
    `# sent upstream with the real OpenAI key: ${where}.`,
    '# To revoke the key, set `disabled: true` on the entry or delete it.',
    entry
      .split('\n')
      .map((line) => `  ${line}`)
      .join('\n'),
    '',
  ].join('\n');
}

/** `acme-eu` -> `OPENAI_API_KEY_ACME_EU`; null when the name has no ASCII letter or digit. */
export function defaultEnvName(institution: string): string | null {
  const word = institution
    .toUpperCase()
    .replace(/[^A-Z0-9]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return word === '' ? null : `OPENAI_API_KEY_${word}`;
}
