/**
 * Incremental Server-Sent Events parser: fed byte chunks split anywhere (even inside a
 * UTF-8 character or a CRLF), it calls back once per dispatched event. Follows the WHATWG
 * https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 */
import { StringDecoder } from 'node:string_decoder';

/** `event` is null when the event has no `event:` field (the spec's default `message`). */
export type SseListener = (event: string | null, data: string) => void;

export interface SseParserOptions {
  /** Events whose data grows past this many characters are dropped, to bound memory. */
  maxEventChars?: number;
}

const LF = 0x0a;
const CR = 0x0d;
const COLON = 0x3a;
const SPACE = 0x20;
const BOM = 0xfeff;
// A Responses `response.completed` event repeats the whole output, so it can be large.
const DEFAULT_MAX_EVENT_CHARS = 16 * 1024 * 1024;

export class SseParser {
  readonly #onEvent: SseListener;
  readonly #maxEventChars: number;
  readonly #decoder = new StringDecoder('utf8');
  #line = '';
  #event: string | null = null;
  #data: string | null = null;
  #oversized = false;
  #discardLine = false;
  #skipLF = false;
  #started = false;

  constructor(onEvent: SseListener, options: SseParserOptions = {}) {
    this.#onEvent = onEvent;
    this.#maxEventChars = options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS;
  }

  push(chunk: Buffer): void {
    this.#feed(this.#decoder.write(chunk));
  }

  /** End of stream: per the spec, an event not closed by a blank line is discarded. */
  end(): void {
    this.#decoder.end();
    this.#line = '';
    this.#data = null;
    this.#event = null;
  }

  #feed(text: string): void {
    let start = 0;
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === BOM) start = 1;
    }
    if (this.#skipLF && start < text.length) {
      this.#skipLF = false;
      if (text.charCodeAt(start) === LF) start++;
    }
    for (let i = start; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== LF && c !== CR) continue;
      this.#endLine(text.slice(start, i));
      if (c === CR) {
        // CRLF is one line ending; its LF may arrive with the next chunk.
        if (i + 1 === text.length) this.#skipLF = true;
        else if (text.charCodeAt(i + 1) === LF) i++;
      }
      start = i + 1;
    }
    if (start < text.length) this.#appendPartial(text.slice(start));
  }

  #appendPartial(text: string): void {
    if (this.#discardLine) return;
    this.#line += text;
    if (this.#line.length + (this.#data?.length ?? 0) > this.#maxEventChars) {
      this.#line = '';
      this.#discardLine = true;
      this.#oversized = true;
    }
  }

  #endLine(tail: string): void {
    const line = this.#line === '' ? tail : this.#line + tail;
    this.#line = '';
    if (this.#discardLine) {
      this.#discardLine = false;
      return;
    }
    this.#processLine(line);
  }

  #processLine(line: string): void {
    if (line === '') return this.#dispatch();
    if (line.charCodeAt(0) === COLON) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === SPACE) value = value.slice(1);
    if (field === 'data') this.#appendData(value);
    else if (field === 'event') this.#event = value;
    // `id` and `retry` only matter to a reconnecting client.
  }

  #appendData(value: string): void {
    if (this.#oversized) return;
    this.#data = this.#data === null ? value : `${this.#data}\n${value}`;
    if (this.#data.length > this.#maxEventChars) {
      this.#data = null;
      this.#oversized = true;
    }
  }

  #dispatch(): void {
    const event = this.#event;
    const data = this.#data;
    const oversized = this.#oversized;
    this.#event = null;
    this.#data = null;
    this.#oversized = false;
    if (data === null || oversized) return;
    this.#onEvent(event === '' ? null : event, data);
  }
}
