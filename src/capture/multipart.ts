/**
 * Incremental multipart/form-data parser (RFC 7578, framing per RFC 2046 §5.1.1): fed chunks
 * split anywhere, it records text fields (capped) and file metadata (size, SHA-256), never file bytes.
 */
import { createHash, type Hash } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import type { MultipartPart } from './body-types.ts';
import { headerParam } from './media-type.ts';

export interface MultipartOptions {
  /** Text field values are cut here and marked `truncated` (default 64 KiB). */
  maxValueBytes?: number;
  /**
   * All text values together are cut here (default: no limit), except that each value keeps its
   * first MIN_VALUE_BYTES: a short field such as `model` is kept whatever came before it.
   */
  maxTotalValueBytes?: number;
  /** Parts past this many are parsed but not recorded (default 1000). */
  maxParts?: number;
}

type State = 'body' | 'delimiter' | 'headers' | 'done' | 'failed';

type OpenPart =
  | { kind: 'file'; name: string; filename: string; contentType: string | null; hash: Hash; bytes: number }
  | { kind: 'text'; name: string; value: Buffer[]; bytes: number; truncated: boolean };

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const SPACE = 0x20;
const TAB = 0x09;
const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_HEADER_BYTES = 16 * 1024;
const MAX_PADDING_BYTES = 256;
const MAX_BOUNDARY_LENGTH = 200;
const EMPTY = Buffer.alloc(0);
const MIN_VALUE_BYTES = 256;

export class MultipartParser {
  readonly #delimiter: Buffer;
  readonly #maxValueBytes: number;
  readonly #maxTotalValueBytes: number;
  readonly #maxParts: number;
  #valueBytes = 0;
  readonly #parts: MultipartPart[] = [];
  #state: State = 'body';
  // Reading the body as if it began with CRLF makes the first boundary an ordinary delimiter.
  #carry: Buffer = Buffer.from('\r\n');
  #head: Buffer | null = null;
  #headLength = 0;
  #part: OpenPart | null = null;
  #partsDropped = false;

  /** Null when the content type has no usable `boundary` parameter. */
  static fromContentType(contentType: string | null, options?: MultipartOptions): MultipartParser | null {
    const boundary = headerParam(contentType, 'boundary');
    if (boundary === null || boundary === '' || boundary.length > MAX_BOUNDARY_LENGTH) return null;
    return new MultipartParser(boundary, options);
  }

  constructor(boundary: string, options: MultipartOptions = {}) {
    this.#delimiter = Buffer.from(`\r\n--${boundary}`);
    this.#maxValueBytes = options.maxValueBytes ?? 64 * 1024;
    this.#maxTotalValueBytes = options.maxTotalValueBytes ?? Number.POSITIVE_INFINITY;
    this.#maxParts = options.maxParts ?? 1000;
  }

  /** Completed parts, in body order. */
  get parts(): readonly MultipartPart[] {
    return this.#parts;
  }

  /** The closing delimiter was seen. */
  get complete(): boolean {
    return this.#state === 'done';
  }

  get failed(): boolean {
    return this.#state === 'failed';
  }

  get partsDropped(): boolean {
    return this.#partsDropped;
  }

  /** The first text field of that name (e.g. `model` for `openai.requestModel`). */
  textField(name: string): string | null {
    for (const part of this.#parts) {
      if ('value' in part && part.name === name) return part.value;
    }
    return null;
  }

  push(chunk: Buffer): void {
    if (!this.#active()) return;
    const buffer = this.#carry.length === 0 ? chunk : Buffer.concat([this.#carry, chunk]);
    this.#carry = EMPTY;
    let offset = 0;
    while (offset < buffer.length && this.#active()) offset = this.#step(buffer, offset);
  }

  #active(): boolean {
    return this.#state !== 'done' && this.#state !== 'failed';
  }

  #step(buffer: Buffer, offset: number): number {
    switch (this.#state) {
      case 'body':
        return this.#readBody(buffer, offset);
      case 'delimiter':
        return this.#readDelimiterEnd(buffer, offset);
      case 'headers':
        return this.#readHeaders(buffer, offset);
      default:
        return buffer.length;
    }
  }

  #readBody(buffer: Buffer, offset: number): number {
    const at = buffer.indexOf(this.#delimiter, offset);
    if (at !== -1) {
      this.#emit(buffer, offset, at);
      this.#closePart();
      this.#state = 'delimiter';
      return at + this.#delimiter.length;
    }
    // A delimiter may have begun at the end of this chunk: hold those bytes back.
    const tail = Math.max(offset, buffer.length - this.#delimiter.length + 1);
    const keep = partialMatchStart(buffer, tail, this.#delimiter);
    this.#emit(buffer, offset, keep);
    this.#carry = buffer.subarray(keep);
    return buffer.length;
  }

  // After a boundary: `--` closes the body; otherwise optional padding, then CRLF and headers.
  #readDelimiterEnd(buffer: Buffer, offset: number): number {
    let i = offset;
    while (i < buffer.length && (buffer[i] === SPACE || buffer[i] === TAB)) i++;
    if (buffer.length - i < 2) {
      if (buffer.length - offset > MAX_PADDING_BYTES) this.#state = 'failed';
      else this.#carry = buffer.subarray(offset);
      return buffer.length;
    }
    if (i === offset && buffer[i] === DASH && buffer[i + 1] === DASH) {
      this.#state = 'done';
      return buffer.length;
    }
    if (buffer[i] !== CR || buffer[i + 1] !== LF) {
      this.#state = 'failed';
      return buffer.length;
    }
    this.#startHeaders();
    return i + 2;
  }

  // The header block is collected after a CRLF so that an empty block is also "\r\n\r\n".
  #startHeaders(): void {
    this.#head ??= Buffer.allocUnsafe(MAX_HEADER_BYTES);
    this.#head[0] = CR;
    this.#head[1] = LF;
    this.#headLength = 2;
    this.#state = 'headers';
  }

  #readHeaders(buffer: Buffer, offset: number): number {
    const head = this.#head;
    if (head === null) return buffer.length;
    const before = this.#headLength;
    const count = Math.min(buffer.length - offset, head.length - before);
    buffer.copy(head, before, offset, offset + count);
    this.#headLength += count;
    const end = head.subarray(0, this.#headLength).indexOf(HEADER_END, Math.max(0, before - 3));
    if (end === -1) {
      if (this.#headLength === head.length) this.#state = 'failed';
      return offset + count;
    }
    this.#openPart(head.toString('utf8', 2, Math.max(2, end)));
    this.#state = 'body';
    return offset + end + HEADER_END.length - before;
  }

  #openPart(headerBlock: string): void {
    let disposition: string | null = null;
    let contentType: string | null = null;
    for (const line of headerBlock.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon === -1) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      if (name === 'content-disposition') disposition = line.slice(colon + 1).trim();
      else if (name === 'content-type') contentType = line.slice(colon + 1).trim();
    }
    const name = headerParam(disposition, 'name') ?? '';
    const filename = extendedFilename(disposition) ?? headerParam(disposition, 'filename');
    this.#part =
      filename === null
        ? { kind: 'text', name, value: [], bytes: 0, truncated: false }
        : { kind: 'file', name, filename, contentType, hash: createHash('sha256'), bytes: 0 };
  }

  #emit(buffer: Buffer, from: number, to: number): void {
    const part = this.#part;
    if (part === null || to <= from) return;
    const piece = buffer.subarray(from, to);
    if (part.kind === 'file') {
      part.hash.update(piece);
      part.bytes += piece.length;
      return;
    }
    const budget = Math.max(this.#maxTotalValueBytes - this.#valueBytes, MIN_VALUE_BYTES - part.bytes);
    const room = Math.min(this.#maxValueBytes - part.bytes, budget);
    if (piece.length > room) part.truncated = true;
    if (room <= 0) return;
    const kept = piece.length > room ? piece.subarray(0, room) : piece;
    part.value.push(kept);
    part.bytes += kept.length;
    this.#valueBytes += kept.length;
  }

  #closePart(): void {
    const part = this.#part;
    this.#part = null;
    if (part === null) return;
    if (this.#parts.length >= this.#maxParts) {
      this.#partsDropped = true;
      return;
    }
    this.#parts.push(part.kind === 'file' ? fileRecord(part) : textRecord(part));
  }
}

function fileRecord(part: Extract<OpenPart, { kind: 'file' }>): MultipartPart {
  const { name, filename, contentType, bytes } = part;
  return { name, filename, contentType, bytes, sha256: part.hash.digest('hex') };
}

function textRecord(part: Extract<OpenPart, { kind: 'text' }>): MultipartPart {
  const bytes = Buffer.concat(part.value, part.bytes);
  if (!part.truncated) return { name: part.name, value: bytes.toString('utf8') };
  // StringDecoder.write holds back a character cut in half by the cap instead of mangling it.
  return { name: part.name, value: new StringDecoder('utf8').write(bytes), truncated: true };
}

// Where the longest suffix of `buffer` that begins `needle` starts, from `from` on; else the end.
function partialMatchStart(buffer: Buffer, from: number, needle: Buffer): number {
  const first = needle[0] ?? CR;
  for (let k = buffer.indexOf(first, from); k !== -1; k = buffer.indexOf(first, k + 1)) {
    if (needle.compare(buffer, k, buffer.length, 0, buffer.length - k) === 0) return k;
  }
  return buffer.length;
}

// RFC 6266 `filename*=UTF-8''%e2%82%ac.txt` takes precedence over `filename`.
function extendedFilename(disposition: string | null): string | null {
  const value = headerParam(disposition, 'filename*');
  const match = value === null ? null : /^utf-8'[^']*'(.*)$/i.exec(value);
  if (match?.[1] === undefined) return null;
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return null;
  }
}
