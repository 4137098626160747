// Filesystem anchors: the repository root (children and wrk run from there) and the bench files.
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The compiled proxy, as `npm start` runs it; the bench compiles src/ there before it starts. */
export const PROXY_ENTRY = 'dist/main.js';
export const WRK_SCRIPT = 'bench/wrk/chat.lua'; // relative to ROOT, which is wrk's cwd
export const WRK_BIN = '/usr/bin/wrk';
export const DEFAULT_OUT = 'bench/RESULTS.md';
export const SELF_TEST_OUT = 'bench/RESULTS.self-test.md';

/**
 * Proxy settings a caller's environment must not bring into a measured proxy: its tracing,
 * MongoDB, audit and policy come from the harness alone (MONGODB_URI with audit off is refused).
 */
export const CALLER_SETTINGS = /^(OTEL_|MONGODB_|AUDIT_|STREAM_USAGE$|POLICY_FILE$|INSTITUTIONS_FILE$)/;
