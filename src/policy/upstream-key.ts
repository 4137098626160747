/**
 * The real OpenAI key a virtual key stands for. It is held in a private field so that no
 * JSON.stringify, util.inspect or structured log of a policy can print it; only the proxy's
 * swap (credential-swap.ts) calls `reveal()`.
 */
import { inspect } from 'node:util';

export type UpstreamKeySource = { readonly env: string } | { readonly file: string };

export class UpstreamKey {
  readonly #value: string;
  readonly source: UpstreamKeySource;

  constructor(value: string, source: UpstreamKeySource) {
    this.#value = value;
    this.source = Object.freeze({ ...source });
    Object.freeze(this);
  }

  reveal(): string {
    return this.#value;
  }

  toJSON(): UpstreamKeySource {
    return this.source;
  }

  toString(): string {
    return 'env' in this.source ? `[upstream key from env ${this.source.env}]` : `[upstream key from file ${this.source.file}]`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}
