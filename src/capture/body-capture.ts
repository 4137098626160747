/**
 * Captures one HTTP body as it streams past: byte count and SHA-256 of the body as sent on the
 * wire, plus a capped, decoded copy rendered as JSON, text or multipart parts for the audit record.
 * Without a copy (`keep: false`, when no consumer wants bodies) it only counts the bytes and finds
 * the wanted `fields` as they pass.
 */
import { isUtf8 } from 'node:buffer';
import { createHash, hash, type Hash } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { JSON_TEXT, type CapturedBody, type OmittedReason } from './body-types.ts';
import { UNBOUNDED, type MemoryAccount } from '../memory-budget.ts';
import { ContentDecoder } from './decoder.ts';
import { isObject, parseJson } from './guards.ts';
import { JsonMemberScanner } from './json-fields.ts';
import { bodyKind, type BodyKind } from './media-type.ts';
import { MultipartParser } from './multipart.ts';

export interface BodyCaptureOptions {
  contentType: string | null;
  contentEncoding: string | null;
  maxBytes: number;
  /** Top-level JSON members (or multipart text fields) to report in `fields`, found even past the cap. */
  fields?: readonly string[];
  /** Where the kept copy's bytes are reserved; past its limit the body is not kept (`memory_budget`). */
  memory?: MemoryAccount;
  /**
   * false: no copy, no hash; the body renders `omitted` with an empty `sha256`, and only `bytes`
   * and `fields` are worth reading. Default true.
   */
  keep?: boolean;
}

type Rendered = Pick<CapturedBody, 'body' | 'bodyEncoding' | 'truncated' | 'omittedReason' | typeof JSON_TEXT>;

const EMPTY = Buffer.alloc(0);

/** Multipart text values held without a copy: enough for `model` and `stream`. */
const NO_COPY_VALUE_BYTES = 4096;

// Compressed data may outgrow its decoded size a little (incompressible input), never by this.
const COMPRESSION_OVERHEAD = 64 * 1024;

/**
 * Past this share of C0/DEL control bytes (other than tab, CR, LF) a text body is not stored: each
 * becomes a six-byte `\u00XX` escape in the record's JSON, and such a body is binary in a text
 * content type rather than text anyone reads.
 */
const MAX_CONTROL_SHARE = 0.1;

/** Where a UTF-8 sequence the cap cut in half starts (the length when none was cut). */
function completeUtf8Length(bytes: Buffer): number {
  let start = bytes.length - 1;
  // Continuation bytes are 10xxxxxx; a sequence has at most three.
  while (start >= 0 && bytes.length - start <= 3 && ((bytes[start] as number) & 0xc0) === 0x80) start--;
  if (start < 0) return bytes.length;
  const lead = bytes[start] as number;
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return bytes.length - start < length ? start : bytes.length;
}

// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const CONTROL = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;

function isControl(byte: number): boolean {
  return (byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) || byte === 0x7f;
}

/** More than MAX_CONTROL_SHARE of the bytes are control characters. */
function mostlyControl(bytes: Buffer): boolean {
  const allowed = bytes.length * MAX_CONTROL_SHARE;
  let controls = 0;
  for (let i = 0; i < bytes.length; i++) {
    if (isControl(bytes[i] as number) && ++controls > allowed) return true;
  }
  return false;
}

/**
 * `push` every chunk as it is forwarded, then `await finish()` once. Chunks are kept by
 * reference (up to the cap), so they must not be modified after `push`; node:http and
 * undici hand out a fresh Buffer per chunk.
 */
export class BodyCapture {
  readonly #contentType: string | null;
  readonly #maxBytes: number;
  readonly #wanted: readonly string[];
  readonly #kind: BodyKind;
  readonly #multipart: MultipartParser | null;
  readonly #decoder: ContentDecoder | null;
  readonly #keepCopy: boolean;
  // Most bodies arrive in one chunk: hashing starts at the second, and a lone chunk is hashed in
  // one call at the end, which costs half as much as a Hash object fed the same bytes.
  #firstChunk: Buffer | null = null;
  #hash: Hash | null = null;
  readonly #kept: Buffer[] = [];
  #bytes = 0;
  #contentBytes = 0;
  #keptBytes = 0;
  #truncated = false;
  readonly #memory: MemoryAccount;
  /** Bytes reserved in `memory` for the kept copy, given back by `release()`. */
  #reserved = 0;
  #overBudget = false;
  #scanner: JsonMemberScanner | null = null;
  #fields: Record<string, unknown> = {};
  #result: Promise<CapturedBody> | null = null;

  constructor(options: BodyCaptureOptions) {
    this.#contentType = options.contentType;
    this.#maxBytes = Math.max(0, options.maxBytes);
    this.#wanted = options.fields ?? [];
    this.#memory = options.memory ?? UNBOUNDED;
    this.#keepCopy = options.keep ?? true;
    const kind = bodyKind(options.contentType);
    // Without a copy, multipart text values are held only to find the wanted fields.
    const valueBytes = this.#keepCopy ? this.#maxBytes : Math.min(this.#maxBytes, NO_COPY_VALUE_BYTES);
    this.#multipart = kind === 'multipart' ? MultipartParser.fromContentType(options.contentType, { maxTotalValueBytes: valueBytes }) : null;
    this.#kind = kind === 'multipart' && this.#multipart === null ? 'binary' : kind;
    if (!this.#keepCopy && this.#kind === 'json' && this.#wanted.length > 0) this.#scanner = new JsonMemberScanner(this.#wanted);
    // Binary bodies are never shown, so never decompressed either; without a copy, neither are
    // bodies nothing is looked for in.
    const learns = this.#keepCopy || this.#scanner !== null || (this.#multipart !== null && this.#wanted.length > 0);
    this.#decoder =
      this.#kind === 'binary' || !learns
        ? null
        : new ContentDecoder(options.contentEncoding, (chunk) => this.#onContent(chunk), {
            maxQueuedBytes: this.#maxBytes + COMPRESSION_OVERHEAD,
          });
  }

  /** The wanted `fields` found in the body; filled once `finish()` has resolved. */
  get fields(): Readonly<Record<string, unknown>> {
    return this.#fields;
  }

  push(chunk: Buffer): void {
    if (this.#result !== null) return;
    this.#bytes += chunk.length;
    if (this.#keepCopy) this.#hashChunk(chunk);
    this.#decoder?.push(chunk);
  }

  /**
   * Gives the kept copy's bytes back to the memory budget: once the record built from it has been
   * handed on (a journal line holds its own bytes). Idempotent.
   */
  release(): void {
    this.#memory.release(this.#reserved);
    this.#reserved = 0;
  }

  /** Idempotent. Resolves once the decompressor (if any) has drained; never rejects. */
  finish(): Promise<CapturedBody> {
    this.#result ??= this.#finish();
    return this.#result;
  }

  async #finish(): Promise<CapturedBody> {
    await this.#decoder?.end();
    const rendered = this.#render();
    this.#fields = this.#collectFields(rendered);
    return {
      contentType: this.#contentType,
      bytes: this.#bytes,
      ...rendered,
      sha256: this.#digest(),
    };
  }

  #hashChunk(chunk: Buffer): void {
    if (this.#hash !== null) {
      this.#hash.update(chunk);
    } else if (this.#firstChunk === null) {
      this.#firstChunk = chunk;
    } else {
      this.#hash = createHash('sha256').update(this.#firstChunk).update(chunk);
      this.#firstChunk = null;
    }
  }

  #digest(): string {
    if (!this.#keepCopy) return '';
    return this.#hash?.digest('hex') ?? hash('sha256', this.#firstChunk ?? EMPTY, 'hex');
  }

  #onContent(chunk: Buffer): void {
    if (!this.#keepCopy) return this.#learn(chunk);
    if (this.#overBudget) {
      this.#scanner?.push(chunk);
      return;
    }
    // What falls within the cap is kept (or held by the multipart parser): reserved first.
    const keeps = Math.min(chunk.length, this.#maxBytes - this.#contentBytes);
    if (keeps > 0) {
      if (!this.#memory.tryReserve(keeps)) return this.#giveUp(chunk);
      this.#reserved += keeps;
    }
    this.#contentBytes += chunk.length;
    if (this.#multipart !== null) this.#multipart.push(chunk);
    else this.#keep(chunk);
    if (this.#contentBytes <= this.#maxBytes || this.#readsPastCap()) return;
    // Decoding further would only spend CPU (a small gzip body can inflate a thousandfold).
    this.#truncated = true;
    this.#decoder?.stop();
  }

  /** No copy: the content passes through the field scanner (or multipart parser), up to the cap when decoded. */
  #learn(chunk: Buffer): void {
    this.#contentBytes += chunk.length;
    if (this.#multipart !== null) this.#multipart.push(chunk);
    else this.#scanner?.push(chunk);
    if (this.#contentBytes > this.#maxBytes && !this.#readsPastCap()) this.#decoder?.stop();
  }

  // Identity content costs nothing more to read on, and may hold multipart parts or `fields`.
  #readsPastCap(): boolean {
    if (this.#decoder?.decoding !== false) return false;
    return this.#multipart !== null || (this.#kind === 'json' && this.#wanted.length > 0);
  }

  #keep(chunk: Buffer): void {
    const room = this.#maxBytes - this.#keptBytes;
    if (chunk.length <= room) {
      this.#kept.push(chunk);
      this.#keptBytes += chunk.length;
      return;
    }
    if (room > 0) this.#keep(chunk.subarray(0, room));
    this.#truncated = true;
    this.#scanner ??= this.#startScan();
    this.#scanner?.push(room > 0 ? chunk.subarray(room) : chunk);
  }

  /**
   * The memory budget is spent: nothing of this body is kept, but wanted JSON members are still
   * looked for (a streaming scan keeps only them), so the record still names the model.
   */
  #giveUp(chunk: Buffer): void {
    this.#overBudget = true;
    this.#scanner ??= this.#startScan();
    this.#scanner?.push(chunk);
    this.#kept.length = 0;
    this.#keptBytes = 0;
    this.release();
    if (this.#scanner === null || this.#decoder?.decoding === true) this.#decoder?.stop();
  }

  // Only once the cap is passed: a body within it is parsed whole at the end.
  #startScan(): JsonMemberScanner | null {
    if (this.#kind !== 'json' || this.#wanted.length === 0) return null;
    const scanner = new JsonMemberScanner(this.#wanted);
    for (const piece of this.#kept) scanner.push(piece);
    return scanner;
  }

  #render(): Rendered {
    if (this.#bytes === 0 || !this.#keepCopy) return { body: null, bodyEncoding: 'omitted', truncated: false };
    if (this.#overBudget) return this.#omitted('memory_budget');
    if (this.#decoder === null || this.#decoder.failed) return this.#omitted();
    const truncated = this.#truncated || this.#decoder.cutShort;
    if (this.#multipart !== null) return this.#renderMultipart(this.#multipart, truncated);
    const content = this.#kept.length === 1 ? (this.#kept[0] as Buffer) : Buffer.concat(this.#kept, this.#keptBytes);
    // JSON text is UTF-8 (RFC 8259 §8.1) and holds no raw control characters: a body that parses
    // needs no further check.
    // A character the cap cut in half is no fault of the body.
    if (!isUtf8(truncated ? content.subarray(0, completeUtf8Length(content)) : content)) return this.#omitted('not_text');
    if (!truncated && this.#kind === 'json') {
      const parsed = parseJson(content.toString('utf8'));
      if (parsed !== undefined) return { body: parsed, bodyEncoding: 'json', truncated, [JSON_TEXT]: content };
    }
    // StringDecoder.write leaves out a character the cap cut in half.
    const text = truncated ? new StringDecoder('utf8').write(content) : content.toString('utf8');
    // Counted only in the rare text that has any: the native search is all most bodies cost.
    if (CONTROL.test(text) && mostlyControl(content)) return this.#omitted('not_text');
    return { body: text, bodyEncoding: 'text', truncated };
  }

  #omitted(reason?: OmittedReason): Rendered {
    const omitted: Rendered = { body: null, bodyEncoding: 'omitted', truncated: this.#bytes > this.#maxBytes };
    if (reason !== undefined) omitted.omittedReason = reason;
    return omitted;
  }

  #renderMultipart(parser: MultipartParser, truncated: boolean): Rendered {
    if (parser.failed && parser.parts.length === 0) return this.#omitted();
    const incomplete = truncated || !parser.complete || parser.partsDropped;
    return { body: [...parser.parts], bodyEncoding: 'multipart', truncated: incomplete };
  }

  #collectFields(rendered: Rendered): Record<string, unknown> {
    const fields: Record<string, unknown> = {};
    const source = rendered.bodyEncoding === 'json' ? rendered.body : null;
    for (const name of this.#wanted) {
      const value = isObject(source) && Object.hasOwn(source, name) ? source[name] : this.#scannedField(name);
      if (value !== undefined) fields[name] = value;
    }
    return fields;
  }

  #scannedField(name: string): unknown {
    if (this.#multipart !== null) return this.#multipart.textField(name) ?? undefined;
    return this.#scanner?.found[name];
  }
}
