// Minimal OTLP/HTTP receiver so proxy+full pays the real export cost without a collector.
// POST /v1/* → 200 {}; GET /stats → counts, read by the driver for the report. Env: PORT.
import http from 'node:http';

let requests = 0;
let bytes = 0;
const OK = Buffer.from('{}');

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ requests, bytes }));
    return;
  }
  req.on('data', (chunk: Buffer) => { bytes += chunk.length; });
  req.on('end', () => {
    const ok = req.method === 'POST' && req.url?.startsWith('/v1/') === true;
    if (ok) requests += 1;
    res.writeHead(ok ? 200 : 404, { 'content-type': 'application/json', 'content-length': OK.length }).end(OK);
  });
});

server.listen(Number(process.env['PORT'] ?? 4318), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
