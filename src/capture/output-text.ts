/**
 * Assembles model output text per choice index under a character cap, so a long stream
 * keeps its first characters without holding the rest.
 */

export class OutputText {
  readonly #maxChars: number;
  readonly #byIndex = new Map<number, string[]>();
  #chars = 0;
  #truncated = false;

  constructor(maxChars: number) {
    this.#maxChars = maxChars;
  }

  get truncated(): boolean {
    return this.#truncated;
  }

  add(index: number, text: string): void {
    if (text === '') return;
    const room = this.#maxChars - this.#chars;
    if (text.length > room) this.#truncated = true;
    const piece = text.length > room ? cutAt(text, room) : text;
    if (piece === '') return;
    this.#chars += piece.length;
    const parts = this.#byIndex.get(index);
    if (parts === undefined) this.#byIndex.set(index, [piece]);
    else parts.push(piece);
  }

  /** Choices in index order, separated by a newline; null when no text arrived. */
  text(): string | null {
    if (this.#byIndex.size === 0) return null;
    const indexes = [...this.#byIndex.keys()].sort((a, b) => a - b);
    return indexes.map((index) => this.#byIndex.get(index)?.join('') ?? '').join('\n');
  }
}

// Never split a UTF-16 surrogate pair: half a pair is not valid text.
function cutAt(text: string, length: number): string {
  if (length <= 0) return '';
  const last = text.charCodeAt(length - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? length - 1 : length);
}
