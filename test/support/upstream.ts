/**
 * Test upstream that answers like the OpenAI API on 127.0.0.1: chat, responses, legacy completions,
 * embeddings, audio, files, models, images, batches, the realtime WebSocket, plus /echo, /sink and
 * /download, and fault injection through `x-test-*` request headers. Content and token counts are
 * fixed so tests can assert on them. It fakes shapes, not semantics: no auth check on HTTP routes,
 * no schema validation, no tokenisation, no tools, no persistence beyond uploaded files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, gzipSync } from 'node:zlib';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

export interface WsSession {
  url: string;
  headers: http.IncomingHttpHeaders;
  protocol: string;
  received: string[];
  /** The close code and reason this side received (1006 for a connection dropped without one). */
  closed: { code: number; reason: string } | null;
}

export interface Upstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  wsSessions: WsSession[];
  aborted: number;
  waitForAborted(n: number): Promise<void>;
  openSockets(): number;
  close(): Promise<void>;
}

/** Token counts every route reports (total = prompt + completion). */
export const EMULATOR_USAGE = { prompt: 11, completion: 7, total: 18, cached: 3, reasoning: 2 } as const;

const WORDS = ['Hello', ' world', ' from', ' the', ' emulator'];
/** The default (5 chunk) answer; `x-test-chunks: N` gives the first N words, then " w5", " w6"... */
export const EMULATOR_TEXT = WORDS.join('');

/** The 8-float vector for input `index`; multiples of 1/16 survive the float32 base64 round trip. */
export function emulatorEmbedding(index: number): number[] {
  return Array.from({ length: 8 }, (_, k) => (index + k + 1) / 16);
}

// 251 is prime, so the pattern never lines up with power-of-two chunk boundaries by accident.
const PATTERN = Buffer.from(Array.from({ length: 251 * 256 }, (_, i) => i % 251));

/** The first `n` bytes served by /download, /v1/audio/speech and unknown file contents: byte i = i % 251. */
export function patternBytes(n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += PATTERN.length) PATTERN.copy(out, i, 0, Math.min(PATTERN.length, n - i));
  return out;
}

type Json = Record<string, unknown>;
type Handler = (c: Ctx) => Promise<void>;

interface Ctx {
  em: Emulator;
  req: http.IncomingMessage;
  res: http.ServerResponse;
  url: URL;
  params: string[];
  started: number;
  body: Buffer;
  bytes: number;
  sha256: string;
  json: Json;
  gone: boolean;
  selfReset: boolean;
}

const noop = (): void => undefined;
const hex = (n: number): string => randomBytes(n).toString('hex');
const now = (): number => Math.floor(Date.now() / 1000);
const str = (v: unknown, fallback: string): string => (typeof v === 'string' ? v : fallback);
const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const header = (req: http.IncomingMessage, name: string): string | undefined => [req.headers[name]].flat()[0];
const h = (c: Ctx, name: string): string | undefined => header(c.req, name);

function int(v: string | null | undefined, fallback: number): number {
  const n = Number.parseInt(v ?? '', 10);
  return Number.isNaN(n) ? fallback : n;
}

function parseJson(text: string): Json {
  try {
    const v: unknown = JSON.parse(text);
    return isObj(v) ? v : {};
  } catch {
    return {};
  }
}

// ---------- waiting: every wait also ends when the client goes away, so nothing outlives it ----------

function waitFor(c: Ctx, arm: (done: () => void) => () => void = () => noop): Promise<void> {
  return new Promise((resolve) => {
    if (c.gone) return resolve();
    const done = (): void => {
      disarm();
      c.res.off('close', done);
      resolve();
    };
    const disarm = arm(done);
    c.res.on('close', done);
  });
}

const sleep = (c: Ctx, ms: number): Promise<void> =>
  waitFor(c, (done) => {
    const timer = setTimeout(done, ms);
    return () => clearTimeout(timer);
  });

const drained = (c: Ctx, w: Writable): Promise<void> =>
  waitFor(c, (done) => {
    w.once('drain', done);
    return () => w.off('drain', done);
  });

/** Node callbacks (write, flush) fire even on destroyed streams, so this cannot hang. */
const settled = (start: (cb: () => void) => unknown): Promise<void> => new Promise((resolve) => void start(resolve));

// ---------- response writing: gzip, backpressure and body faults live here, not in routes ----------

function wantsGzip(c: Ctx): boolean {
  const accepted = c.url.pathname === '/v1/models' && !!h(c, 'accept-encoding')?.includes('gzip');
  return accepted || h(c, 'x-test-gzip') === '1';
}

function bodyFault(c: Ctx): 'reset' | 'hang' | undefined {
  if (h(c, 'x-test-reset') === 'mid-body') return 'reset';
  return h(c, 'x-test-hang') === 'body' ? 'hang' : undefined;
}

/** `write` resolves false once nothing more should be written: the client is gone or a fault fired. */
interface Out {
  write(chunk: string | Buffer): Promise<boolean>;
  end(): void;
}

function openStream(c: Ctx, status: number, type: string, length?: number): Out {
  const zip = wantsGzip(c) ? createGzip() : undefined;
  const fault = bodyFault(c);
  const headers: http.OutgoingHttpHeaders = { 'content-type': type };
  if (zip) headers['content-encoding'] = 'gzip';
  else if (length !== undefined && !fault) headers['content-length'] = length;
  c.res.writeHead(status, headers).flushHeaders();
  if (zip) pipeline(zip, c.res).catch(noop);
  const target: Writable = zip ?? c.res;
  let sent = 0;
  const write = async (chunk: string | Buffer): Promise<boolean> => {
    if (c.gone) return false;
    const ok = target.write(chunk);
    if (zip) await settled((cb) => zip.flush(cb)); // each SSE event must reach the client on its own
    if (++sent === 1 && fault) return fireFault(c, fault);
    if (!ok) await drained(c, target);
    return !c.gone;
  };
  const end = (): void => {
    if (!c.gone) target.end();
  };
  return { write, end };
}

async function fireFault(c: Ctx, fault: 'reset' | 'hang'): Promise<false> {
  // An empty write completes only after what precedes it reached the socket, so the client sees the part.
  await settled((cb) => c.res.write('', cb));
  if (fault === 'reset') destroy(c);
  else await waitFor(c);
  return false;
}

function destroy(c: Ctx): void {
  c.selfReset = true;
  c.req.socket.destroy();
}

async function sendBody(c: Ctx, status: number, type: string, body: Buffer): Promise<void> {
  if (!bodyFault(c)) {
    const data = wantsGzip(c) ? gzipSync(body) : body;
    const encoding = data === body ? {} : { 'content-encoding': 'gzip' };
    c.res.writeHead(status, { 'content-type': type, 'content-length': data.length, ...encoding }).end(data);
    return;
  }
  const out = openStream(c, status, type);
  const mid = Math.max(1, body.length >> 1);
  if ((await out.write(body.subarray(0, mid))) && (await out.write(body.subarray(mid)))) out.end();
}

const sendJson = (c: Ctx, status: number, value: unknown): Promise<void> =>
  sendBody(c, status, 'application/json', Buffer.from(JSON.stringify(value)));

async function sse(c: Ctx, frames: string[]): Promise<void> {
  const out = openStream(c, 200, 'text/event-stream; charset=utf-8');
  const gap = int(h(c, 'x-test-chunk-delay-ms'), 0);
  for (const [i, frame] of frames.entries()) {
    if (i > 0 && gap > 0) await sleep(c, gap);
    if (!(await out.write(frame))) return;
  }
  out.end();
}

async function streamPattern(c: Ctx, total: number, type: string): Promise<void> {
  const out = openStream(c, 200, type, total);
  for (let sent = 0; sent < total; sent += PATTERN.length) {
    if (!(await out.write(PATTERN.subarray(0, Math.min(PATTERN.length, total - sent))))) return;
  }
  out.end();
}

// ---------- errors ----------

function openAiError(status: number): Json {
  const error = (message: string, type: string, code: string | null): Json => ({ message, type, param: null, code });
  if (status === 429) return error('Rate limit reached for requests. Try again in 1s.', 'requests', 'rate_limit_exceeded');
  if (status === 401) return error('Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
  if (status >= 500) return error('The server had an error while processing your request.', 'server_error', null);
  return error(`Emulated error ${status}.`, 'invalid_request_error', null);
}

function sendError(c: Ctx, status: number, message?: string): Promise<void> {
  if (status === 429) c.res.setHeader('retry-after', '1');
  const error = openAiError(status);
  return sendJson(c, status, { error: message ? { ...error, message } : error });
}

// ---------- chat, responses, completions ----------

const U = EMULATOR_USAGE;
const CHAT_USAGE = {
  prompt_tokens: U.prompt, completion_tokens: U.completion, total_tokens: U.total,
  prompt_tokens_details: { cached_tokens: U.cached }, completion_tokens_details: { reasoning_tokens: U.reasoning },
};
const RESPONSES_USAGE = {
  input_tokens: U.prompt, input_tokens_details: { cached_tokens: U.cached },
  output_tokens: U.completion, output_tokens_details: { reasoning_tokens: U.reasoning }, total_tokens: U.total,
};

/** The answer's text pieces: `x-test-text` answers that text as the one piece. */
const words = (c: Ctx): string[] => {
  const text = h(c, 'x-test-text');
  if (text !== undefined) return [text];
  return Array.from({ length: int(h(c, 'x-test-chunks'), 5) }, (_, i) => WORDS[i] ?? ` w${i}`);
};
const dataFrame = (v: unknown): string => `data: ${JSON.stringify(v)}\n\n`;
const model = (c: Ctx, fallback: string): string => str(c.json.model, fallback);

/** Chat and legacy completions stream alike: one choice per chunk, an optional usage chunk, then [DONE]. */
function chunkStream(c: Ctx, head: Json, choices: Json[]): Promise<void> {
  const usage = isObj(c.json.stream_options) && c.json.stream_options.include_usage === true;
  const chunks: Json[] = choices.map((choice) => ({ ...head, choices: [choice], ...(usage ? { usage: null } : {}) }));
  if (usage) chunks.push({ ...head, choices: [], usage: CHAT_USAGE });
  return sse(c, [...chunks.map(dataFrame), 'data: [DONE]\n\n']);
}

const chat: Handler = (c) => {
  const [id, created, parts] = [`chatcmpl-${hex(12)}`, now(), words(c)];
  const head = (object: string): Json =>
    ({ id, object, created, model: model(c, 'gpt-4o-mini'), system_fingerprint: 'fp_emulator' });
  if (c.json.stream !== true) {
    const message = { role: 'assistant', content: parts.join(''), refusal: null };
    const choices = [{ index: 0, message, logprobs: null, finish_reason: 'stop' }];
    return sendJson(c, 200, { ...head('chat.completion'), choices, usage: CHAT_USAGE });
  }
  const choice = (delta: Json, finish: string | null): Json =>
    ({ index: 0, delta, logprobs: null, finish_reason: finish });
  const deltas = parts.map((content) => choice({ content }, null));
  const choices = [choice({ role: 'assistant', content: '' }, null), ...deltas, choice({}, 'stop')];
  return chunkStream(c, head('chat.completion.chunk'), choices);
};

const completions: Handler = (c) => {
  const id = `cmpl-${hex(12)}`;
  const head = { id, object: 'text_completion', created: now(), model: model(c, 'gpt-3.5-turbo-instruct') };
  const choice = (text: string, finish: string | null): Json => ({ text, index: 0, logprobs: null, finish_reason: finish });
  const parts = words(c);
  const stream = [...parts.map((p) => choice(p, null)), choice('', 'stop')];
  if (c.json.stream === true) return chunkStream(c, head, stream);
  return sendJson(c, 200, { ...head, choices: [choice(parts.join(''), 'stop')], usage: CHAT_USAGE });
};

const responses: Handler = (c) => {
  const [id, itemId, created, parts] = [`resp_${hex(24)}`, `msg_${hex(24)}`, now(), words(c)];
  const text = parts.join('');
  const part = (t: string): Json => ({ type: 'output_text', text: t, annotations: [], logprobs: [] });
  const item = (status: string, content: Json[]): Json =>
    ({ id: itemId, type: 'message', status, role: 'assistant', content });
  const done = item('completed', [part(text)]);
  const response = (status: string, output: Json[], usage: Json | null): Json => ({
    id, object: 'response', created_at: created, status, error: null, incomplete_details: null,
    model: model(c, 'gpt-4o-mini'), output, parallel_tool_calls: true, tool_choice: 'auto', tools: [], usage,
  });
  if (c.json.stream !== true) return sendJson(c, 200, response('completed', [done], RESPONSES_USAGE));
  const at = { item_id: itemId, output_index: 0, content_index: 0 };
  const events: ({ type: string } & Json)[] = [
    { type: 'response.created', response: response('in_progress', [], null) },
    { type: 'response.in_progress', response: response('in_progress', [], null) },
    { type: 'response.output_item.added', output_index: 0, item: item('in_progress', []) },
    { type: 'response.content_part.added', ...at, part: part('') },
    ...parts.map((delta) => ({ type: 'response.output_text.delta', ...at, delta, logprobs: [] })),
    { type: 'response.output_text.done', ...at, text, logprobs: [] },
    { type: 'response.content_part.done', ...at, part: part(text) },
    { type: 'response.output_item.done', output_index: 0, item: done },
    { type: 'response.completed', response: response('completed', [done], RESPONSES_USAGE) },
  ];
  return sse(c, events.map((e, i) => `event: ${e.type}\n${dataFrame({ ...e, sequence_number: i })}`));
};

// ---------- embeddings, audio, files, models, images, batches ----------

const embeddings: Handler = (c) => {
  const input = c.json.input;
  // A bare number[] is one tokenised input, not several.
  const count = Array.isArray(input) && typeof input[0] !== 'number' ? input.length : 1;
  const encode = (v: number[]): string => Buffer.from(new Float32Array(v).buffer).toString('base64');
  const data = Array.from({ length: count }, (_, index) => {
    const vector = emulatorEmbedding(index);
    return { object: 'embedding', index, embedding: c.json.encoding_format === 'base64' ? encode(vector) : vector };
  });
  const usage = { prompt_tokens: U.prompt, total_tokens: U.prompt };
  return sendJson(c, 200, { object: 'list', data, model: model(c, 'text-embedding-3-small'), usage });
};

interface Part {
  filename?: string;
  data: Buffer;
}

/** Just enough multipart/form-data for a fake: parts by field name, with an optional filename. */
function multipart(c: Ctx): Map<string, Part> {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(h(c, 'content-type') ?? '');
  const delim = Buffer.from(`--${m?.[1] ?? m?.[2] ?? ''}`);
  const parts = new Map<string, Part>();
  for (let pos = c.body.indexOf(delim); m && pos !== -1; ) {
    const next = c.body.indexOf(delim, pos + delim.length);
    if (next === -1) break;
    const raw = c.body.subarray(pos + delim.length + 2, next - 2); // CRLF after a delimiter, CRLF before the next
    const sep = raw.indexOf('\r\n\r\n');
    const head = raw.subarray(0, Math.max(sep, 0)).toString('utf8');
    const name = /[; ]name="([^"]*)"/i.exec(head)?.[1];
    if (sep !== -1 && name !== undefined) {
      parts.set(name, { filename: /filename="([^"]*)"/i.exec(head)?.[1], data: raw.subarray(sep + 4) });
    }
    pos = next;
  }
  return parts;
}

/** `x-test-usage: <JSON>` adds that usage object, as whisper-1 (`{type: "duration", seconds}`) or gpt-4o-transcribe report it. */
const transcribe: Handler = (c) => {
  const usage = h(c, 'x-test-usage');
  const text = `transcribed ${multipart(c).get('file')?.data.length ?? 0} bytes`;
  return sendJson(c, 200, usage === undefined ? { text } : { text, usage: parseJson(usage) });
};

const speech: Handler = (c) => streamPattern(c, int(h(c, 'x-test-bytes'), 64 * 1024), 'audio/mpeg');

const uploadFile: Handler = (c) => {
  const parts = multipart(c);
  const [id, file] = [`file-${hex(12)}`, parts.get('file')];
  c.em.files.set(id, file?.data ?? Buffer.alloc(0));
  return sendJson(c, 200, {
    object: 'file', id, purpose: parts.get('purpose')?.data.toString() ?? 'assistants',
    filename: file?.filename ?? 'file', bytes: file?.data.length ?? 0, created_at: now(),
    expires_at: null, status: 'processed', status_details: null,
  });
};

const fileContent: Handler = (c) => {
  const stored = c.em.files.get(c.params[0] ?? '');
  if (stored) return sendBody(c, 200, 'application/octet-stream', stored);
  return streamPattern(c, int(h(c, 'x-test-bytes'), 1024), 'application/octet-stream');
};

const models: Handler = (c) => {
  const ids = ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small', 'whisper-1', 'tts-1', 'gpt-realtime'];
  const data = ids.map((id) => ({ id, object: 'model', created: 1_700_000_000, owned_by: 'system' }));
  return sendJson(c, 200, { object: 'list', data });
};

const images: Handler = (c) => {
  const image = { b64_json: patternBytes(64).toString('base64'), revised_prompt: null };
  const n = typeof c.json.n === 'number' ? c.json.n : 1;
  return sendJson(c, 200, { created: now(), data: Array.from({ length: n }, () => image) });
};

function batch(id: string, status: 'validating' | 'completed', body: Json): Json {
  const [done, t] = [status === 'completed', now()];
  return {
    id, object: 'batch', endpoint: str(body.endpoint, '/v1/chat/completions'), errors: null,
    input_file_id: str(body.input_file_id, 'file-input'), completion_window: str(body.completion_window, '24h'),
    status, output_file_id: done ? 'file-output' : null, error_file_id: null, created_at: t,
    in_progress_at: done ? t : null, expires_at: t + 86_400, completed_at: done ? t : null,
    request_counts: { total: +done, completed: +done, failed: 0 }, metadata: body.metadata ?? null,
  };
}

const createBatch: Handler = (c) => sendJson(c, 200, batch(`batch_${hex(12)}`, 'validating', c.json));
const getBatch: Handler = (c) => sendJson(c, 200, batch(c.params[0] ?? '', 'completed', {}));

// ---------- test routes ----------

const echo: Handler = (c) => {
  const { method, url, headers, rawHeaders } = c.req;
  return sendJson(c, 200, { method, url, headers, rawHeaders, bodyBytes: c.bytes, bodySha256: c.sha256 });
};
const sink: Handler = (c) => sendJson(c, 200, { bytes: c.bytes, sha256: c.sha256 });
const download: Handler = (c) => streamPattern(c, int(c.url.searchParams.get('bytes'), 0), 'application/octet-stream');

const ROUTES: [method: string, path: RegExp, handler: Handler][] = [
  ['POST', /^\/v1\/chat\/completions$/, chat],
  ['POST', /^\/v1\/responses$/, responses],
  ['POST', /^\/v1\/completions$/, completions],
  ['POST', /^\/v1\/embeddings$/, embeddings],
  ['POST', /^\/v1\/audio\/(?:transcriptions|translations)$/, transcribe],
  ['POST', /^\/v1\/audio\/speech$/, speech],
  ['POST', /^\/v1\/files$/, uploadFile],
  ['GET', /^\/v1\/files\/([^/]+)\/content$/, fileContent],
  ['GET', /^\/v1\/models$/, models],
  ['POST', /^\/v1\/images\/generations$/, images],
  ['POST', /^\/v1\/batches$/, createBatch],
  ['GET', /^\/v1\/batches\/([^/]+)$/, getBatch],
  ['*', /^\/echo/, echo],
  ['POST', /^\/sink$/, sink],
  ['GET', /^\/download$/, download],
];

// ---------- request lifecycle ----------

async function readBody(req: http.IncomingMessage, keep: boolean): Promise<Pick<Ctx, 'body' | 'bytes' | 'sha256'>> {
  const [hash, chunks] = [createHash('sha256'), [] as Buffer[]];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
    if (keep) chunks.push(chunk);
  }
  return { body: Buffer.concat(chunks), bytes, sha256: hash.digest('hex') };
}

function setCommonHeaders(c: Ctx): void {
  c.res.setHeader('x-request-id', `req_${hex(16)}`);
  c.res.setHeader('openai-processing-ms', String(Date.now() - c.started));
  c.res.setHeader('openai-organization', 'org-test');
  c.res.setHeader('openai-version', '2020-10-01');
  c.res.setHeader('x-ratelimit-remaining-requests', '9999');
  const raw = c.req.rawHeaders; // not headers: repeated x-test-response-header lines must each count
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() !== 'x-test-response-header') continue;
    const [name = '', ...value] = (raw[i + 1] ?? '').split('=');
    c.res.appendHeader(name.trim(), value.join('='));
  }
}

/** Applies the controls that act before the response head; false when the request is already dealt with. */
async function preamble(c: Ctx): Promise<boolean> {
  const delay = int(h(c, 'x-test-delay-ms'), 0);
  if (h(c, 'x-test-reset') === 'before-headers') destroy(c);
  else if (h(c, 'x-test-hang') === 'headers') await waitFor(c);
  else if (delay > 0) await sleep(c, delay);
  if (c.gone || c.selfReset) return false;
  setCommonHeaders(c);
  const status = int(h(c, 'x-test-status'), 0);
  if (status > 0) await sendError(c, status);
  return status <= 0;
}

function route(c: Ctx): Promise<void> {
  const method = c.req.method === 'HEAD' ? 'GET' : c.req.method;
  for (const [m, path, handler] of ROUTES) {
    const match = path.exec(c.url.pathname);
    if (!match || (m !== '*' && m !== method)) continue;
    c.params = match.slice(1);
    return handler(c);
  }
  return sendError(c, 404, `Invalid URL (${c.req.method} ${c.url.pathname})`);
}

async function handle(em: Emulator, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const record: RecordedRequest = {
    method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders,
    body: Buffer.alloc(0),
  };
  em.requests.push(record); // on arrival, so the order is arrival order even when bodies finish out of order
  const url = new URL(record.url, 'http://127.0.0.1');
  const c: Ctx = {
    em, req, res, url, params: [], started: Date.now(), body: record.body, bytes: 0, sha256: '', json: {},
    gone: false, selfReset: false,
  };
  req.on('error', noop);
  res.on('error', noop);
  res.on('close', () => {
    c.gone = true;
    if (!res.writableFinished && !c.selfReset && !em.closing) em.noteAborted();
  });
  // `x-test-read-delay-ms`: a slow upstream that reads nothing of the body for that long (backpressure).
  const readDelay = int(header(req, 'x-test-read-delay-ms'), 0);
  if (readDelay > 0) await sleep(c, readDelay);
  Object.assign(c, await readBody(req, url.pathname !== '/sink'));
  record.body = c.body;
  c.json = c.body[0] === 0x7b ? parseJson(c.body.toString('utf8')) : {};
  if (await preamble(c)) await route(c);
}

function failed(res: http.ServerResponse, err: unknown): void {
  if (res.headersSent) return void res.destroy();
  const error = { message: `emulator bug: ${String(err)}`, type: 'server_error', param: null, code: null };
  res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error }));
}

// ---------- realtime WebSocket ----------

function upgradeRejection(req: http.IncomingMessage, url: URL): number {
  if (url.pathname !== '/v1/realtime') return 404;
  const forced = int(header(req, 'x-test-status'), 0);
  if (forced > 0) return forced;
  // The lower-case prefix, unless `x-test-pick-protocol: key` asks for a server that takes it in any case.
  const offered = header(req, 'sec-websocket-protocol');
  const insecureKey = (header(req, 'x-test-pick-protocol') === 'key' ? offered?.toLowerCase() : offered)?.includes('openai-insecure-api-key.');
  return req.headers.authorization || insecureKey ? 0 : 401;
}

function rejectUpgrade(socket: Duplex, status: number): void {
  const body = JSON.stringify({ error: openAiError(status) });
  const head = [`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Error'}`, 'content-type: application/json',
    `content-length: ${Buffer.byteLength(body)}`, `x-request-id: req_${hex(16)}`, 'connection: close'];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}

const toBuffer = (d: RawData): Buffer =>
  Array.isArray(d) ? Buffer.concat(d) : Buffer.isBuffer(d) ? d : Buffer.from(d);
const send = (ws: WebSocket, event: Json): void => ws.send(JSON.stringify({ event_id: `event_${hex(8)}`, ...event }));

function realtimeSession(em: Emulator, ws: WebSocket, req: http.IncomingMessage, url: URL): void {
  const session: WsSession = { url: req.url ?? '', headers: req.headers, protocol: ws.protocol, received: [], closed: null };
  em.wsSessions.push(session);
  ws.on('error', noop);
  ws.once('close', (code: number, reason: Buffer) => (session.closed = { code, reason: reason.toString('utf8') }));
  const model = url.searchParams.get('model') ?? 'gpt-realtime';
  send(ws, { type: 'session.created', session: { id: `sess_${hex(12)}`, object: 'realtime.session', model } });
  ws.on('message', (data, isBinary) => {
    const buf = toBuffer(data);
    session.received.push(buf.toString('utf8'));
    if (isBinary) ws.send(buf, { binary: true });
    else onRealtimeEvent(ws, buf.toString('utf8'));
  });
}

function onRealtimeEvent(ws: WebSocket, text: string): void {
  const msg = parseJson(text);
  // `test_usage` (not an OpenAI field): the `response.done` reports that usage (audio token details...).
  if (msg.type === 'response.create') return respondRealtime(ws, isObj(msg.test_usage) ? msg.test_usage : null);
  // `test.send`: a binary message of `bytes` bytes toward the client (a server event too big for it).
  if (msg.type === 'test.send') return ws.send(Buffer.alloc(typeof msg.bytes === 'number' ? msg.bytes : 0, 0x61), { binary: true });
  if (msg.type !== 'test.close') return send(ws, { type: 'echo', payload: Object.keys(msg).length ? msg : text });
  try {
    ws.close(typeof msg.code === 'number' ? msg.code : 1000, str(msg.reason, ''));
  } catch {
    ws.terminate(); // ws refuses reserved close codes; a dropped connection is the nearest honest answer
  }
}

function respondRealtime(ws: WebSocket, testUsage: Json | null): void {
  const at = { response_id: `resp_${hex(12)}`, item_id: `item_${hex(12)}`, output_index: 0, content_index: 0 };
  for (const delta of WORDS.slice(0, 3)) send(ws, { type: 'response.output_text.delta', ...at, delta });
  const usage = testUsage ?? {
    input_tokens: U.prompt, output_tokens: U.completion, total_tokens: U.total,
    input_token_details: { cached_tokens: U.cached }, output_token_details: {},
  };
  const response = { id: at.response_id, object: 'realtime.response', status: 'completed', output: [], usage };
  send(ws, { type: 'response.done', response });
}

// ---------- server ----------

class Emulator implements Upstream {
  url = '';
  port = 0;
  requests: RecordedRequest[] = [];
  wsSessions: WsSession[] = [];
  aborted = 0;
  closing = false;
  readonly files = new Map<string, Buffer>();
  private readonly sockets = new Set<Socket>();
  private waiters: { n: number; resolve: () => void }[] = [];
  private readonly wss = new WebSocketServer({
    noServer: true,
    // `x-test-pick-protocol: key`: a server that confirms the key entry (openai-insecure-api-key.<key>, any case).
    handleProtocols: (offered, req) => {
      if (header(req, 'x-test-pick-protocol') === 'key') {
        const key = [...offered].find((p) => p.toLowerCase().startsWith('openai-insecure-api-key.'));
        if (key !== undefined) return key;
      }
      return offered.has('realtime') ? 'realtime' : false;
    },
  });

  constructor(private readonly server: http.Server | https.Server) {
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      handle(this, req, res).catch((err: unknown) => failed(res, err));
    });
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      socket.on('error', noop);
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      const status = upgradeRejection(req, url);
      if (status > 0) return rejectUpgrade(socket, status);
      this.wss.handleUpgrade(req, socket, head, (ws) => realtimeSession(this, ws, req, url));
    });
  }

  noteAborted(): void {
    this.aborted += 1;
    const ready = this.waiters.filter((w) => this.aborted >= w.n);
    this.waiters = this.waiters.filter((w) => this.aborted < w.n);
    for (const w of ready) w.resolve();
  }

  // Arrow properties, so tests may pass these around detached from the object.
  waitForAborted = (n: number): Promise<void> =>
    this.aborted >= n ? Promise.resolve() : new Promise((resolve) => this.waiters.push({ n, resolve }));

  openSockets = (): number => this.sockets.size;

  close = async (): Promise<void> => {
    this.closing = true;
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    const closed = [new Promise((resolve) => this.server.close(resolve))];
    // The server reports closed before its sockets do; waiting for each keeps openSockets() at 0 afterwards.
    for (const s of this.sockets) closed.push(new Promise((resolve) => s.once('close', resolve).destroy()));
    await Promise.all(closed);
  };
}

export async function startUpstream(
  opts: { tls?: { cert: string | Buffer; key: string | Buffer } } = {},
): Promise<Upstream> {
  const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }) : http.createServer();
  const em = new Emulator(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  em.port = (server.address() as AddressInfo).port;
  em.url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${em.port}`;
  return em;
}
