// One HTTP exchange with the proxy as a client sees it: status, the proxy's request id (the
// audit record's _id), the body, or what went wrong; optionally cut after the first body bytes.
import http from 'node:http';

export const PROXY_ID_HEADER = 'x-proxy-request-id';

export interface ExchangeRequest {
  method?: string;
  path: string;
  headers?: http.OutgoingHttpHeaders;
  body?: Buffer;
  /** Destroy the request once this many body bytes have arrived (a client going away mid-stream). */
  abortAfterBytes?: number;
  timeoutMs?: number;
}

export interface ExchangeResult {
  status: number;
  /** x-proxy-request-id, or null when no response head arrived. */
  id: string | null;
  body: Buffer;
  /** Set when the exchange did not end with a complete response (an abort by us included). */
  error: string | null;
  aborted: boolean;
  ms: number;
}

export function exchange(baseUrl: string, agent: http.Agent | false, request: ExchangeRequest): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const result: ExchangeResult = { status: 0, id: null, body: Buffer.alloc(0), error: null, aborted: false, ms: 0 };
    const chunks: Buffer[] = [];
    let received = 0;
    let settled = false;
    const done = (error: string | null): void => {
      if (settled) return;
      settled = true;
      result.error = error;
      result.body = Buffer.concat(chunks);
      result.ms = performance.now() - t0;
      resolve(result);
    };
    const headers = { ...request.headers };
    if (request.body !== undefined) headers['content-length'] = request.body.length;
    const req = http.request(`${baseUrl}${request.path}`, { method: request.method ?? 'POST', agent, headers }, (res) => {
      result.status = res.statusCode ?? 0;
      const id = res.headers[PROXY_ID_HEADER];
      result.id = typeof id === 'string' ? id : null;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (chunks.length < 1024) chunks.push(chunk);
        if (request.abortAfterBytes !== undefined && received >= request.abortAfterBytes && !result.aborted) {
          result.aborted = true;
          req.destroy();
          done('aborted by the client');
        }
      });
      res.once('end', () => done(res.complete ? null : 'response cut short'));
      res.once('error', (err) => done(err.message));
      res.once('close', () => done(res.complete ? null : 'response cut short'));
    });
    req.setTimeout(request.timeoutMs ?? 30_000, () => req.destroy(new Error(`no progress for ${request.timeoutMs ?? 30_000} ms`)));
    req.once('error', (err) => done(err.message));
    req.end(request.body);
  });
}

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}
