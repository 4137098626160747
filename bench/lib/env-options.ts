// `--set NAME=VALUE` and `--unset NAME`: the lead adjusts what the proxy is started with (the
// names of the client limits, their values) without editing the harness.

export interface EnvEdits {
  edits: Record<string, string | undefined>;
  rest: string[];
}

export function parseEnvEdits(argv: readonly string[]): EnvEdits {
  const edits: Record<string, string | undefined> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--set' || arg === '--unset') {
      const value = argv[++i];
      if (value === undefined) throw new Error(`${arg} needs a value`);
      if (arg === '--unset') edits[value] = undefined;
      else {
        const eq = value.indexOf('=');
        if (eq < 1) throw new Error(`--set expects NAME=VALUE, got "${value}"`);
        edits[value.slice(0, eq)] = value.slice(eq + 1);
      }
    } else rest.push(arg);
  }
  return { edits, rest };
}
