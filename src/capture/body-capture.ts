// Captures one HTTP body as it streams past: byte count and SHA-256 of the body as sent on the
// wire, plus a capped, decoded copy rendered as JSON, text or multipart parts for the audit record.
import { createHash, hash, type Hash } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { JSON_TEXT, type CapturedBody } from '../audit/record.ts';
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
}

type Rendered = Pick<CapturedBody, 'body' | 'bodyEncoding' | 'truncated' | typeof JSON_TEXT>;

const EMPTY = Buffer.alloc(0);

// Compressed data may outgrow its decoded size a little (incompressible input), never by this.
const COMPRESSION_OVERHEAD = 64 * 1024;

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
  // Most bodies arrive in one chunk: hashing starts at the second, and a lone chunk is hashed in
  // one call at the end, which costs half as much as a Hash object fed the same bytes.
  #firstChunk: Buffer | null = null;
  #hash: Hash | null = null;
  readonly #kept: Buffer[] = [];
  #bytes = 0;
  #contentBytes = 0;
  #keptBytes = 0;
  #truncated = false;
  #scanner: JsonMemberScanner | null = null;
  #fields: Record<string, unknown> = {};
  #result: Promise<CapturedBody> | null = null;

  constructor(options: BodyCaptureOptions) {
    this.#contentType = options.contentType;
    this.#maxBytes = Math.max(0, options.maxBytes);
    this.#wanted = options.fields ?? [];
    const kind = bodyKind(options.contentType);
    this.#multipart = kind === 'multipart' ? MultipartParser.fromContentType(options.contentType, { maxTotalValueBytes: this.#maxBytes }) : null;
    this.#kind = kind === 'multipart' && this.#multipart === null ? 'binary' : kind;
    // Binary bodies are never shown, so never decompressed either.
    this.#decoder =
      this.#kind === 'binary'
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
    this.#hashChunk(chunk);
    this.#decoder?.push(chunk);
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
    return this.#hash?.digest('hex') ?? hash('sha256', this.#firstChunk ?? EMPTY, 'hex');
  }

  #onContent(chunk: Buffer): void {
    this.#contentBytes += chunk.length;
    if (this.#multipart !== null) this.#multipart.push(chunk);
    else this.#keep(chunk);
    if (this.#contentBytes <= this.#maxBytes || this.#readsPastCap()) return;
    // Decoding further would only spend CPU (a small gzip body can inflate a thousandfold).
    this.#truncated = true;
    this.#decoder?.stop();
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

  // Only once the cap is passed: a body within it is parsed whole at the end.
  #startScan(): JsonMemberScanner | null {
    if (this.#kind !== 'json' || this.#wanted.length === 0) return null;
    const scanner = new JsonMemberScanner(this.#wanted);
    for (const piece of this.#kept) scanner.push(piece);
    return scanner;
  }

  #render(): Rendered {
    if (this.#bytes === 0) return { body: null, bodyEncoding: 'omitted', truncated: false };
    if (this.#decoder === null || this.#decoder.failed) return this.#omitted();
    const truncated = this.#truncated || this.#decoder.cutShort;
    if (this.#multipart !== null) return this.#renderMultipart(this.#multipart, truncated);
    const content = this.#kept.length === 1 ? (this.#kept[0] as Buffer) : Buffer.concat(this.#kept, this.#keptBytes);
    // StringDecoder.write leaves out a character the cap cut in half.
    if (truncated) return { body: new StringDecoder('utf8').write(content), bodyEncoding: 'text', truncated };
    const text = content.toString('utf8');
    const parsed = this.#kind === 'json' ? parseJson(text) : undefined;
    if (parsed === undefined) return { body: text, bodyEncoding: 'text', truncated };
    return { body: parsed, bodyEncoding: 'json', truncated, [JSON_TEXT]: content };
  }

  #omitted(): Rendered {
    return { body: null, bodyEncoding: 'omitted', truncated: this.#bytes > this.#maxBytes };
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
