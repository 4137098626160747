// Large-body clients: a counted download and a chunked upload from a generated stream (one 64 KiB
// block pushed repeatedly, so the client never holds the transfer in memory).
import http from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { IDLE_TIMEOUT_MS } from './sse-client.ts';

function failWhenIdle(req: http.ClientRequest, url: string): void {
  req.once('timeout', () => req.destroy(new Error(`no progress for ${IDLE_TIMEOUT_MS} ms on ${url}`)));
}

export interface Transfer {
  status: number;
  seconds: number;
  /** Bytes received (download) or the byte count the upstream reported (upload). */
  bytes: number;
}

export function download(baseUrl: string, bytes: number): Promise<Transfer> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const url = `${baseUrl}/download?bytes=${bytes}`;
    const req = http.get(url, { agent: false, timeout: IDLE_TIMEOUT_MS }, (res) => {
      let received = 0;
      res.on('data', (chunk: Buffer) => { received += chunk.length; });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, seconds: (performance.now() - t0) / 1000, bytes: received }));
      res.once('error', reject);
    });
    failWhenIdle(req, url);
    req.once('error', reject);
  });
}

function generated(total: number): Readable {
  const block = Buffer.alloc(64 * 1024, 0x79);
  let left = total;
  return new Readable({
    read() {
      while (left > 0) {
        const n = Math.min(left, block.length);
        left -= n;
        if (!this.push(n === block.length ? block : block.subarray(0, n))) return;
      }
      this.push(null);
    },
  });
}

export async function upload(baseUrl: string, bytes: number): Promise<Transfer> {
  const t0 = performance.now();
  // No content-length: node:http then sends the body with chunked encoding.
  const url = `${baseUrl}/upload`;
  const req = http.request(url, { method: 'POST', agent: false, timeout: IDLE_TIMEOUT_MS, headers: { 'content-type': 'application/octet-stream' } });
  failWhenIdle(req, url);
  const response = new Promise<http.IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  await pipeline(generated(bytes), req);
  const res = await response;
  let text = '';
  for await (const chunk of res.setEncoding('utf8') as AsyncIterable<string>) text += chunk;
  const seconds = (performance.now() - t0) / 1000;
  let reported = -1;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && 'bytes' in parsed && typeof parsed.bytes === 'number') reported = parsed.bytes;
  } catch {
    // reported stays -1 and the caller fails with the status
  }
  return { status: res.statusCode ?? 0, seconds, bytes: reported };
}
