// Command-line options → run settings (rounds, durations, transfer size, variants, self-test, --before).
import { DEFAULT_OUT, SELF_TEST_OUT } from './paths.ts';
import { VARIANTS, type Variant } from './endpoints.ts';

export interface Settings {
  rounds: number;
  quick: boolean;
  selfTest: boolean;
  variants: Variant[];
  latencyS: number;
  throughputS: number;
  warmupS: number;
  streamRequests: number;
  transferBytes: number;
  out: string;
  /** A git ref whose proxy variants are measured alongside this tree's, in the same rounds. */
  before: string | null;
  argv: string[];
}

const MiB = 1024 * 1024;
export const USAGE = `usage: npm run bench -- [--rounds N] [--quick] [--only v1,v2] [--self-test] [--out FILE] [--before REF]
  variants: ${VARIANTS.join(', ')}
  --self-test   stand the proxy variants in with pipe-undici (to test the harness without src/main.ts)
  --before REF  also measure the proxy variants of git REF (checked out in a temporary worktree,
                started as its package.json start says), as "<variant>@before", same rounds`;

function isVariant(name: string): name is Variant {
  return (VARIANTS as readonly string[]).includes(name);
}

export function parseOptions(argv: string[]): Settings {
  let rounds: number | undefined;
  let quick = false;
  let selfTest = false;
  let variants: Variant[] = [...VARIANTS];
  let out: string | undefined;
  let before: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = (): string => {
      const next = argv[++i];
      if (next === undefined) throw new Error(`${arg ?? ''} needs a value\n${USAGE}`);
      return next;
    };
    if (arg === '--quick') quick = true;
    else if (arg === '--self-test') selfTest = true;
    else if (arg === '--rounds') rounds = Number(value());
    else if (arg === '--out') out = value();
    else if (arg === '--before') before = value();
    else if (arg === '--only') {
      const names = value().split(',').map((name) => name.trim());
      const unknown = names.filter((name) => !isVariant(name));
      if (unknown.length > 0) throw new Error(`unknown variant(s) ${unknown.join(', ')}\n${USAGE}`);
      variants = VARIANTS.filter((variant) => names.includes(variant)); // keep the canonical column order
    } else throw new Error(`unknown option ${arg ?? ''}\n${USAGE}`);
  }
  const chosenRounds = rounds ?? (quick ? 2 : 5);
  if (!Number.isInteger(chosenRounds) || chosenRounds < 1) throw new Error(`--rounds must be a positive integer\n${USAGE}`);
  if (before !== null && selfTest) throw new Error(`--before measures real proxies; it does not go with --self-test\n${USAGE}`);
  return {
    rounds: chosenRounds,
    quick,
    selfTest,
    variants,
    latencyS: quick ? 2 : 5,
    throughputS: quick ? 2 : 5,
    // Per endpoint per round, after a restart. Measured in 2 s windows at c=64 from start, CPU per
    // request settles after ~2 s for the pipes but ~8-10 s for the proxy with audit and tracing
    // (more code for the JIT: its compiler threads were still busy after 1 s).
    warmupS: quick ? 2 : 10,
    streamRequests: quick ? 6 : 10,
    transferBytes: (quick ? 32 : 200) * MiB,
    out: out ?? (selfTest ? SELF_TEST_OUT : DEFAULT_OUT),
    before,
    argv,
  };
}
