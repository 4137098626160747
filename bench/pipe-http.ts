// Baseline 1: the thinnest node:http → node:http forwarder (keep-alive Agent, streamed both ways).
// Its figures show what the built-in client costs; env: PORT, UPSTREAM_URL.
import http from 'node:http';
import { pipeline } from 'node:stream';
import { forwardHeaders } from './hop-by-hop.ts';

const upstream = new URL(process.env['UPSTREAM_URL'] ?? 'http://127.0.0.1:8081');
const agent = new http.Agent({ keepAlive: true });

const server = http.createServer((req, res) => {
  const upReq = http.request(
    {
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: forwardHeaders(req.headers, true),
      agent,
    },
    (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, forwardHeaders(upRes.headers, false));
      pipeline(upRes, res, () => undefined); // errors already destroy both ends
    },
  );
  upReq.on('error', () => {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  });
  pipeline(req, upReq, () => undefined);
});

server.listen(Number(process.env['PORT'] ?? 8082), '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
