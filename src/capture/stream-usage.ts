/**
 * STREAM_USAGE=inject: asks upstream for the usage chunk of a streamed chat/completions request
 * the client did not ask it for, then removes that chunk from what the client receives.
 * https://platform.openai.com/docs/api-reference/chat/create#chat-create-stream_options
 */
import { Transform, type TransformCallback } from 'node:stream';
import { isObject, parseJson } from './guards.ts';
import { SseParser } from './sse.ts';

const INCLUDE_USAGE = Buffer.from('"stream_options":{"include_usage":true},');

/**
 * Sets `stream_options.include_usage: true` on a JSON request with `stream: true` that lacks it.
 * Without `stream_options` the member is spliced in after the opening brace, leaving every
 * other byte as sent (JSON.stringify would round integers such as a large `seed`); an existing
 * `stream_options` object is merged and the body re-serialized. Any other body comes back as is.
 * The caller must send the returned body's length as Content-Length.
 */
export function injectIncludeUsage(body: Buffer): { body: Buffer; injected: boolean } {
  const request = parseJson(body.toString('utf8'));
  if (!isObject(request) || request.stream !== true) return { body, injected: false };
  if (!Object.hasOwn(request, 'stream_options')) {
    const brace = body.indexOf('{') + 1;
    return { body: Buffer.concat([body.subarray(0, brace), INCLUDE_USAGE, body.subarray(brace)]), injected: true };
  }
  const options = request.stream_options;
  if (options !== null && !isObject(options)) return { body, injected: false };
  if (options?.include_usage === true) return { body, injected: false };
  request.stream_options = { ...options, include_usage: true };
  return { body: Buffer.from(JSON.stringify(request)), injected: true };
}

const LF = 0x0a;
const CR = 0x0d;
// A chunk event is a few hundred bytes; an event larger than this is passed through unexamined.
const MAX_HELD_BYTES = 256 * 1024;

/**
 * Forwards an SSE stream byte for byte, dropping the event whose JSON has `"choices": []` and a
 * non-null `usage`: the extra chunk `include_usage` adds. Complete events go out as soon as their
 * chunk arrives; only the bytes of an event still incomplete at a chunk boundary wait for the rest.
 * What else the client sees change: with `include_usage` on, every other chunk carries
 * `"usage": null`, a member it would not have had; and the stream ends without a usage chunk.
 */
export class UsageChunkStripper extends Transform {
  #held: Buffer[] = [];
  #heldBytes = 0;
  #lineEmpty = true;
  #lastCR = false;
  #blankCR: 'strip' | 'keep' | null = null;
  #passThrough = false;
  #stripped = 0;

  /** How many events were removed (1 when upstream sent the usage chunk). */
  get stripped(): number {
    return this.#stripped;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#scan(chunk);
    callback();
  }

  override _flush(callback: TransformCallback): void {
    for (const piece of this.#held) this.push(piece);
    this.#held = [];
    callback();
  }

  #scan(chunk: Buffer): void {
    if (chunk.length === 0) return;
    let i = 0;
    let forwardFrom = 0;
    if (this.#blankCR !== null) {
      // The chunk boundary split the CRLF ending an event: its LF goes (or goes away) with that event.
      if (chunk[0] === LF) i = 1;
      if (this.#blankCR === 'strip') forwardFrom = i;
      this.#blankCR = null;
      this.#lastCR = false;
    }
    let eventStart = i;
    for (; i < chunk.length; i++) {
      const byte = chunk[i];
      if (byte === LF && this.#lastCR) {
        this.#lastCR = false;
        continue;
      }
      this.#lastCR = byte === CR;
      if (byte !== LF && byte !== CR) {
        this.#lineEmpty = false;
        continue;
      }
      if (!this.#lineEmpty) {
        this.#lineEmpty = true;
        continue;
      }
      // A blank line: the event ends here, with the LF of a CRLF if it is in this chunk.
      const crAtEnd = byte === CR && i + 1 === chunk.length;
      if (byte === CR && chunk[i + 1] === LF) {
        i++;
        this.#lastCR = false;
      }
      const end = i + 1;
      const strip = this.#endEvent(chunk, eventStart, end);
      if (strip) {
        if (eventStart > forwardFrom) this.push(chunk.subarray(forwardFrom, eventStart));
        forwardFrom = end;
      }
      if (crAtEnd) this.#blankCR = strip ? 'strip' : 'keep';
      eventStart = end;
    }
    this.#forwardRest(chunk, forwardFrom, eventStart);
  }

  // True when the event is the usage chunk and must not be forwarded.
  #endEvent(chunk: Buffer, start: number, end: number): boolean {
    if (this.#passThrough) {
      this.#passThrough = false;
      return false;
    }
    const held = this.#held;
    this.#held = [];
    this.#heldBytes = 0;
    const tail = chunk.subarray(start, end);
    const event = held.length === 0 ? tail : Buffer.concat([...held, tail]);
    if (isUsageChunk(event)) {
      this.#stripped++;
      return true;
    }
    for (const piece of held) this.push(piece);
    return false;
  }

  #forwardRest(chunk: Buffer, forwardFrom: number, eventStart: number): void {
    const until = this.#passThrough ? chunk.length : eventStart;
    if (until > forwardFrom) this.push(forwardFrom === 0 && until === chunk.length ? chunk : chunk.subarray(forwardFrom, until));
    if (until === chunk.length) return;
    this.#held.push(chunk.subarray(until));
    this.#heldBytes += chunk.length - until;
    if (this.#heldBytes <= MAX_HELD_BYTES) return;
    for (const piece of this.#held) this.push(piece);
    this.#held = [];
    this.#heldBytes = 0;
    this.#passThrough = true;
  }
}

// Only events that mention `"choices"` followed by an empty array get their JSON parsed.
function isUsageChunk(event: Buffer): boolean {
  const at = event.indexOf('"choices"');
  if (at === -1 || !followedByEmptyArray(event, at + '"choices"'.length)) return false;
  const payloads: string[] = [];
  new SseParser((_event, data) => payloads.push(data)).push(event);
  const chunk = parseJson(payloads[0] ?? '');
  return isObject(chunk) && Array.isArray(chunk.choices) && chunk.choices.length === 0 && isObject(chunk.usage);
}

function followedByEmptyArray(bytes: Buffer, from: number): boolean {
  let i = from;
  for (const expected of [0x3a, 0x5b, 0x5d]) {
    while (bytes[i] === 0x20 || bytes[i] === 0x09) i++;
    if (bytes[i] !== expected) return false;
    i++;
  }
  return true;
}
