/** The CLI's usage text and the error of a command line it cannot run. */
import { AppError } from '../errors.ts';

/** A command line that cannot be run as given: the CLI prints the message and exits 2. */
export class UsageError extends AppError {
  readonly code = 'cli_usage';
  readonly status = 400;
  override readonly name = 'UsageError';
}

export const USAGE = `Usage: openai-api-proxy <command>

Commands:
  keys new --institution NAME [--env VAR | --file PATH]
      Make a virtual key for an institution's users. Prints the key once and the
      policy file entry (its fingerprint) that maps it to the real OpenAI key,
      read from the environment variable VAR (default OPENAI_API_KEY_<NAME>) or
      from the file PATH. The proxy stores no key.

Options:
  -h, --help   Show this help.
`;
