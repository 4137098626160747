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

  /** `admit: false` labels a value only if it already has its own label (e.g. from a failed call). */
  value(raw: string | null | undefined, admit = true): string {
    if (raw === null || raw === undefined || raw === '') return NONE;
    if (this.#seen.has(raw)) return raw;
    if (!admit || this.#seen.size >= this.#max || raw.length > MAX_LENGTH) return OTHER;
    this.#seen.add(raw);
    return raw;
  }
}

/**
 * The OpenAI API's resources: an operation outside them (a scanner's `/admin`, a typo) is
 * labelled `other` without taking a slot, so real operations always keep their name.
 */
const OPENAI_RESOURCES = new Set([
  'chat', 'responses', 'completions', 'embeddings', 'audio', 'images', 'files', 'batches', 'models',
  'moderations', 'realtime', 'uploads', 'vector_stores', 'assistants', 'threads', 'fine_tuning',
  'conversations', 'containers', 'evals', 'videos', 'organization', 'projects', 'webhooks',
]);

export function operationLabel(operation: string | null | undefined): string {
  if (operation === null || operation === undefined) return NONE;
  return OPENAI_RESOURCES.has(operation.split('.')[0] ?? '') ? operation : OTHER;
}
