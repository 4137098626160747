/**
 * Bounded label values: the first `max` distinct values keep their name, later ones fold into
 * `other`, so a client sending random model names cannot blow up Prometheus' series count.
 */
export const OTHER = 'other';
export const NONE = 'none';

// Longer values are not names but junk, and would bloat every series they appear in.
const MAX_LENGTH = 100;

export class BoundedLabel {
  readonly #max: number;
  readonly #seen = new Set<string>();

  constructor(max: number) {
    this.#max = max;
  }

  value(raw: string | null | undefined): string {
    if (raw === null || raw === undefined || raw === '') return NONE;
    if (this.#seen.has(raw)) return raw;
    if (this.#seen.size >= this.#max || raw.length > MAX_LENGTH) return OTHER;
    this.#seen.add(raw);
    return raw;
  }
}
