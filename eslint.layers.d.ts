// Types of eslint.layers.js, for test/layers.test.ts.
import type { Linter } from 'eslint';

export declare const layers: Array<Linter.Config & { name: string; files: string[] }>;
