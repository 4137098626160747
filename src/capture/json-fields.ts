/**
 * Finds chosen top-level members of a JSON object streamed in chunks without parsing the
 * whole document: how `model` or `usage` are still found in a body larger than the capture cap.
 * Grammar: RFC 8259, https://www.rfc-editor.org/rfc/rfc8259
 */
import { parseJson } from './guards.ts';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MAX_KEY_BYTES = 256;

// Position inside the root object.
type Position = 'key' | 'inKey' | 'colon' | 'value' | 'inValue';

export class JsonMemberScanner {
  readonly #wanted: ReadonlySet<string>;
  readonly #maxValueBytes: number;
  readonly #found: Record<string, unknown> = {};
  #depth = 0;
  #position: Position = 'key';
  #inString = false;
  #escaped = false;
  #done = false;
  #member: string | null = null;
  #capture: Buffer[] | null = null;
  #captureBytes = 0;
  #captureLimit = 0;
  #captureFrom = 0;

  /** Values larger than `maxValueBytes` of JSON text are skipped. */
  constructor(members: Iterable<string>, maxValueBytes = 16 * 1024) {
    this.#wanted = new Set(members);
    this.#maxValueBytes = maxValueBytes;
  }

  /** The wanted members seen so far, parsed; a duplicate member keeps its last value, as in JSON.parse. */
  get found(): Record<string, unknown> {
    return { ...this.#found };
  }

  push(chunk: Buffer): void {
    if (this.#done) return;
    this.#captureFrom = 0;
    // Next quote and backslash positions, cached so long strings are skipped by native search.
    let quote = -2;
    let backslash = -2;
    let i = 0;
    while (i < chunk.length && !this.#done) {
      if (!this.#inString) {
        this.#structural(chunk, i);
        i++;
      } else if (this.#escaped) {
        this.#escaped = false;
        i++;
      } else {
        if (quote !== -1 && quote < i) quote = chunk.indexOf(QUOTE, i);
        if (backslash !== -1 && backslash < i) backslash = chunk.indexOf(BACKSLASH, i);
        if (backslash !== -1 && (quote === -1 || backslash < quote)) {
          this.#escaped = true;
          i = backslash + 1;
        } else if (quote === -1) {
          i = chunk.length;
        } else {
          this.#endString(chunk, quote);
          i = quote + 1;
        }
      }
    }
    if (this.#capture !== null) this.#take(chunk.subarray(this.#captureFrom));
  }

  #structural(chunk: Buffer, i: number): void {
    const c = chunk[i];
    if (this.#depth === 0) {
      if (c === OPEN_BRACE) this.#depth = 1;
      else if (!isWhitespace(c)) this.#done = true;
    } else if (this.#depth === 1) {
      this.#rootMember(chunk, i, c);
    } else if (c === QUOTE) {
      this.#inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      this.#depth++;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      this.#depth--;
    }
  }

  #rootMember(chunk: Buffer, i: number, c: number | undefined): void {
    if (this.#position === 'value' && !isWhitespace(c)) {
      this.#position = 'inValue';
      if (this.#member !== null) this.#startCapture(i, this.#maxValueBytes);
    }
    switch (this.#position) {
      case 'key':
        if (c === QUOTE) {
          this.#position = 'inKey';
          this.#inString = true;
          this.#startCapture(i + 1, MAX_KEY_BYTES);
        } else if (!isWhitespace(c)) {
          this.#done = true;
        }
        return;
      case 'colon':
        if (c === COLON) this.#position = 'value';
        else if (!isWhitespace(c)) this.#done = true;
        return;
      case 'inValue':
        this.#valueByte(chunk, i, c);
        return;
      default:
        return;
    }
  }

  #valueByte(chunk: Buffer, i: number, c: number | undefined): void {
    if (c === QUOTE) {
      this.#inString = true;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      this.#depth++;
    } else if (c === COMMA || c === CLOSE_BRACE) {
      this.#endValue(chunk, i);
      this.#position = 'key';
      this.#done = c === CLOSE_BRACE;
    }
  }

  #endString(chunk: Buffer, quote: number): void {
    this.#inString = false;
    if (this.#position !== 'inKey') return;
    const key = this.#endCapture(chunk, quote)?.toString('utf8');
    this.#member = key !== undefined && this.#wanted.has(key) ? key : null;
    this.#position = 'colon';
  }

  #endValue(chunk: Buffer, end: number): void {
    const text = this.#endCapture(chunk, end);
    if (this.#member !== null && text !== null) {
      const value = parseJson(text.toString('utf8'));
      if (value !== undefined) this.#found[this.#member] = value;
    }
    this.#member = null;
  }

  #startCapture(from: number, limit: number): void {
    this.#capture = [];
    this.#captureBytes = 0;
    this.#captureLimit = limit;
    this.#captureFrom = from;
  }

  // Null when nothing was being captured or the capture outgrew its limit.
  #endCapture(chunk: Buffer, end: number): Buffer | null {
    if (this.#capture === null) return null;
    this.#take(chunk.subarray(this.#captureFrom, end));
    const parts = this.#capture;
    this.#capture = null;
    return this.#captureBytes > this.#captureLimit ? null : Buffer.concat(parts);
  }

  #take(piece: Buffer): void {
    if (this.#capture === null) return;
    this.#captureBytes += piece.length;
    if (this.#captureBytes <= this.#captureLimit) this.#capture.push(piece);
  }
}

function isWhitespace(c: number | undefined): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}
