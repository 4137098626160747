// Filesystem anchors: the repository root (children and wrk run from there) and the bench files.
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const WRK_SCRIPT = 'bench/wrk/chat.lua'; // relative to ROOT, which is wrk's cwd
export const WRK_BIN = '/usr/bin/wrk';
export const DEFAULT_OUT = 'bench/RESULTS.md';
export const SELF_TEST_OUT = 'bench/RESULTS.self-test.md';
