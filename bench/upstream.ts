// Fast OpenAI upstream emulator: fixed chat completion, SSE stream (20 chunks 5 ms apart),
// /download?bytes=N and /upload. Everything is precomputed so the upstream costs every variant alike. Env: PORT.
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { chatCompletion, streamChunks, streamTail, STREAM_CHUNK_GAP_MS } from './lib/payloads.ts';

const COMPLETION = Buffer.from(JSON.stringify(chatCompletion()));
const CHUNKS = streamChunks().map((event) => Buffer.from(event));
const TAIL = Buffer.from(streamTail());
const BLOCK = Buffer.alloc(64 * 1024, 0x78); // one block reused for every download write
const COMMON = { 'x-request-id': 'req_bench', 'openai-processing-ms': '1', 'openai-version': '2020-10-01' };
const STREAM_RE = /"stream"\s*:\s*true/; // cheaper than JSON.parse, and the bench bodies are fixed

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, ...COMMON }).end(body);
}

function readBody(req: IncomingMessage, done: (body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => done(chunks.length === 1 && chunks[0] !== undefined ? chunks[0] : Buffer.concat(chunks)));
}

function chat(req: IncomingMessage, res: ServerResponse): void {
  readBody(req, (body) => {
    if (req.headers.authorization === undefined) {
      json(res, 401, { error: { message: 'missing Authorization', type: 'invalid_request_error' } });
    } else if (STREAM_RE.test(body.toString('latin1'))) {
      stream(res);
    } else {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': COMPLETION.length, ...COMMON });
      res.end(COMPLETION);
    }
  });
}

function stream(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...COMMON });
  let next = 0;
  let timer: NodeJS.Timeout | undefined;
  // The first chunk leaves with the headers; usage + [DONE] follow the 20th chunk one gap later, together.
  const tick = (): void => {
    const chunk = CHUNKS[next++];
    if (chunk === undefined) {
      res.end(TAIL);
      return;
    }
    res.write(chunk);
    timer = setTimeout(tick, STREAM_CHUNK_GAP_MS);
  };
  res.on('close', () => clearTimeout(timer));
  tick();
}

function download(res: ServerResponse, total: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': total });
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, BLOCK.length);
      left -= n;
      if (!res.write(n === BLOCK.length ? BLOCK : BLOCK.subarray(0, n))) {
        res.once('drain', pump); // backpressure: never queue more than the socket buffer
        return;
      }
    }
    res.end();
  };
  pump();
}

function upload(req: IncomingMessage, res: ServerResponse): void {
  let bytes = 0;
  req.on('data', (chunk: Buffer) => { bytes += chunk.length; });
  req.on('end', () => json(res, 200, { bytes }));
}

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  if (req.method === 'POST' && url === '/v1/chat/completions') return chat(req, res);
  if (req.method === 'POST' && url === '/upload') return upload(req, res);
  if (req.method === 'GET' && url.startsWith('/download?')) {
    const bytes = Number(new URLSearchParams(url.slice('/download?'.length)).get('bytes'));
    if (Number.isSafeInteger(bytes) && bytes >= 0) return download(res, bytes);
  }
  req.resume();
  req.on('end', () => json(res, 404, { error: { message: `no route ${req.method ?? ''} ${url}`, type: 'not_found' } }));
});

// Long keep-alive: the node:http client Agent ignores Keep-Alive hints, and a bench must not race idle timeouts.
server.keepAliveTimeout = 600_000;
server.listen(Number(process.env['PORT'] ?? 8081), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
