/**
 * The admin port: /healthz (liveness, with details as JSON), /readyz (200 only while the proxy
 * takes traffic) and /metrics (Prometheus exposition, when metrics are on).
 */
import http from 'node:http';
import { errorMessage, log } from './log.ts';
import { describeError, InternalProxyError, MethodNotAllowedError, NotFoundError, type ProxyError } from './proxy/errors.ts';

export interface MetricsEndpoint {
  /** Renders the exposition; `openMetrics` when the scraper asked for OpenMetrics. */
  render(openMetrics: boolean): Promise<{ contentType: string; body: string }>;
}

export interface AdminOptions {
  health: () => Record<string, unknown>;
  ready: () => { ready: boolean; reason?: string };
  metrics: MetricsEndpoint | null;
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(body);
}

/** The proxy's one error shape (describeError), so a probe or scraper reads the same body as a client. */
function fail(res: http.ServerResponse, err: ProxyError, headers: Record<string, string> = {}): void {
  const { status, body } = describeError(err);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(body);
}

async function serveMetrics(metrics: MetricsEndpoint, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const openMetrics = (req.headers.accept ?? '').includes('application/openmetrics-text');
  const { contentType, body } = await metrics.render(openMetrics);
  res.writeHead(200, { 'content-type': contentType });
  res.end(body);
}

export function createAdminServer(options: AdminOptions): http.Server {
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return fail(res, new MethodNotAllowedError(`${req.method ?? ''} is not served on the admin port; use GET`), { allow: 'GET, HEAD' });
    }
    if (path === '/healthz') return json(res, 200, options.health());
    if (path === '/readyz') {
      const state = options.ready();
      return json(res, state.ready ? 200 : 503, state);
    }
    if (path === '/metrics' && options.metrics !== null) {
      serveMetrics(options.metrics, req, res).catch((err: unknown) => {
        log.error('rendering /metrics failed', { error: errorMessage(err) });
        if (!res.headersSent) fail(res, new InternalProxyError('rendering the metrics failed', { cause: err }));
      });
      return;
    }
    fail(res, new NotFoundError(`${path} is not served on the admin port: /healthz, /readyz${options.metrics === null ? '' : ', /metrics'}`));
  });
}
