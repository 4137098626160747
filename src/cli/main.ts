#!/usr/bin/env node
/**
 * The `openai-api-proxy` command (package.json `bin`): administrative tasks run next to the
 * proxy, never inside it. Exit codes: 0 done, 2 usage error (as the proxy's own bad config).
 */
import { parseArgs } from 'node:util';
import { keysNew } from './keys-new.ts';
import { USAGE, UsageError } from './usage.ts';

export function run(argv: readonly string[]): { code: number; stdout: string; stderr: string } {
  try {
    return { code: 0, stdout: dispatch(argv), stderr: '' };
  } catch (err) {
    if (err instanceof UsageError) return { code: 2, stdout: '', stderr: `openai-api-proxy: ${err.message}\nRun "openai-api-proxy --help" for usage.\n` };
    throw err;
  }
}

function dispatch(argv: readonly string[]): string {
  const [command, sub, ...rest] = argv;
  if (command === undefined) throw new UsageError('a command is required');
  if (command === '--help' || command === '-h' || command === 'help') return USAGE;
  if (command !== 'keys') throw new UsageError(`unknown command "${command}"`);
  if (sub === '--help' || sub === '-h') return USAGE;
  if (sub !== 'new') throw new UsageError(sub === undefined ? 'keys: a subcommand is required (new)' : `keys: unknown subcommand "${sub}"`);
  const args = parse(rest);
  if (args.help === true) return USAGE;
  return keysNew(args);
}

function parse(args: string[]): { institution?: string; env?: string; file?: string; help?: boolean } {
  try {
    return parseArgs({
      args,
      options: {
        institution: { type: 'string' },
        env: { type: 'string' },
        file: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    // parseArgs's messages name the option ("Unknown option '--instituion'"); they are usage errors.
    throw new UsageError(`keys new: ${(err as Error).message}`);
  }
}

const result = run(process.argv.slice(2));
process.stdout.write(result.stdout);
process.stderr.write(result.stderr);
process.exitCode = result.code;
