// The policy file of the proxy+policy and proxy+limit variants (README "Institutions and virtual
// keys"): one virtual key of one institution, its upstream key read from an environment variable
// the harness sets, and for proxy+limit a request limit that no run can reach.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fingerprint } from '../../src/fingerprint.ts';
import { newVirtualKey } from '../../src/policy/virtual-key-format.ts';

/** The key every endpoint without a policy is sent, and the upstream key behind the virtual one: upstream sees the same bytes. */
export const CLIENT_KEY = 'sk-bench';
export const INSTITUTION = 'bench';
export const UPSTREAM_KEY_ENV = 'OPENAI_API_KEY_BENCH';
/**
 * Per minute, the window a request rate limit is written in: its counts live in memory and its
 * rebuild at start reads under a minute of the journal. A 5 s run at c=64 sends under 10^5.
 */
export const REQUEST_LIMIT = { window: 'minute', requests: 1_000_000_000 } as const;

export interface BenchPolicy {
  path: string;
  /** A fresh `sk-proxy-` key, the one wrk and the other clients send to this endpoint. */
  virtualKey: string;
  limited: boolean;
}

/** Writes `<workDir>/<name>.policy.json` with a new virtual key; `limited` adds the institution's request limit. */
export function writePolicy(workDir: string, name: string, limited: boolean): BenchPolicy {
  const virtualKey = newVirtualKey();
  const policy = {
    version: 1,
    virtualKeys: [{ fingerprint: fingerprint(virtualKey), institution: INSTITUTION, upstreamKey: { env: UPSTREAM_KEY_ENV } }],
    institutions: { [INSTITUTION]: { limits: limited ? [REQUEST_LIMIT] : [] } },
  };
  const path = join(workDir, `${name}.policy.json`);
  writeFileSync(path, `${JSON.stringify(policy, null, 2)}\n`);
  return { path, virtualKey, limited };
}
