// Baseline 2, the floor for any Node proxy: node:http server + undici Pool, headers forwarded,
// bodies streamed both ways, nothing else. Env: PORT, UPSTREAM_URL.
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'undici';
import { forwardHeaders } from './hop-by-hop.ts';

// One origin, so a Pool is what an Agent would build internally, minus the per-request lookup.
const pool = new Pool(process.env['UPSTREAM_URL'] ?? 'http://127.0.0.1:8081', { connections: null });

async function forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const length = req.headers['content-length'];
  const hasBody = req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
  const upstream = await pool.request({
    path: req.url ?? '/',
    method: req.method ?? 'GET',
    headers: forwardHeaders(req.headers, true),
    body: hasBody ? req : null,
  });
  res.writeHead(upstream.statusCode, forwardHeaders(upstream.headers, false));
  await pipeline(upstream.body, res);
}

const server = http.createServer((req, res) => {
  forward(req, res).catch(() => {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  });
});

server.listen(Number(process.env['PORT'] ?? 8083), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
