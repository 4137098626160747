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

type Values<L extends string> = Partial<Record<L, string | number>>;

/**
 * Combinations as a tree of their values, label by label, so a lookup builds and hashes no joined
 * key. Values are compared as given: callers pass each label always as a string or always a number.
 */
interface Node {
  children: Map<string | number | undefined, Node> | null;
  held: boolean;
}

/**
 * Bounds the label combinations of one metric. Each label is bounded on its own, but their
 * product is not (institutions × models × operations × statuses): combinations take the
 * metric's room first come, first served, and past it a new one is folded rather than dropped, so
 * the metric's total stays exact. Folding turns the labels outside `keep` into `other`, so sums by
 * the kept labels (a closed vocabulary the proxy sets itself: status, outcome, token type) stay
 * exact too, within a reserve of a tenth of the room; past that reserve everything lands in one
 * series whose labels are all `other`. The metric then never holds more than `maxCombinations`.
 * https://prometheus.io/docs/practices/naming/#labels
 */
export class SeriesCap<L extends string> {
  readonly #names: readonly L[];
  readonly #keep: ReadonlySet<L>;
  readonly #root: Node = { children: null, held: false };
  #size = 0;
  /** Combinations that keep their own values. */
  readonly #own: number;
  /** Combinations, own and folded, before the last slot, which is the all-`other` series'. */
  readonly #folded: number;
  readonly #allOther: Record<L, string>;
  readonly #onFold: () => void;

  constructor(names: readonly L[], options: { maxCombinations: number; keep?: readonly L[]; onFold: () => void }) {
    this.#names = names;
    this.#keep = new Set(options.keep ?? []);
    const max = Math.max(1, options.maxCombinations);
    this.#folded = max - 1;
    this.#own = this.#keep.size > 0 ? Math.max(0, this.#folded - Math.ceil(max / 10)) : this.#folded;
    this.#allOther = Object.fromEntries(names.map((name) => [name, OTHER])) as Record<L, string>;
    this.#onFold = options.onFold;
  }

  /** The labels to record `values` under: themselves, or their folded form once the room is taken. */
  labels(values: Values<L>): Values<L> {
    if (this.#holds(values)) return values;
    if (this.#size < this.#own) {
      this.#hold(values);
      return values;
    }
    this.#onFold();
    if (this.#keep.size > 0) {
      const folded = {} as Record<L, string | number>;
      for (const name of this.#names) folded[name] = this.#keep.has(name) ? values[name] ?? '' : OTHER;
      if (this.#holds(folded)) return folded;
      if (this.#size < this.#folded) {
        this.#hold(folded);
        return folded;
      }
    }
    if (!this.#holds(this.#allOther)) this.#hold(this.#allOther);
    return this.#allOther;
  }

  /** Label combinations the metric holds. */
  get size(): number {
    return this.#size;
  }

  #holds(values: Values<L>): boolean {
    let node: Node | undefined = this.#root;
    for (const name of this.#names) {
      node = node.children?.get(values[name]);
      if (node === undefined) return false;
    }
    return node.held;
  }

  #hold(values: Values<L>): void {
    let node = this.#root;
    for (const name of this.#names) {
      const value = values[name];
      node.children ??= new Map();
      let child = node.children.get(value);
      if (child === undefined) {
        child = { children: null, held: false };
        node.children.set(value, child);
      }
      node = child;
    }
    node.held = true;
    this.#size++;
  }
}
