/**
 * The admin port: /healthz (liveness, with details as JSON), /readyz (200 only while the proxy
 * takes traffic), /metrics (Prometheus exposition, when metrics are on) and /quotas (the
 * limits' windows, with POLICY_FILE). With ADMIN_TOKEN, every path but the two probes wants it as
 * a bearer token (RFC 6750 §2.1).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { errorMessage, log } from './log.ts';
import { AdminUnauthorizedError, describeError, InternalProxyError, MethodNotAllowedError, NotFoundError, type ProxyError } from './proxy/errors.ts';

export interface MetricsEndpoint {
  /** Renders the exposition; `openMetrics` when the scraper asked for OpenMetrics. */
  render(openMetrics: boolean): Promise<{ contentType: string; body: string }>;
}

export interface AdminOptions {
  health: () => Record<string, unknown>;
  ready: () => { ready: boolean; reason?: string };
  metrics: MetricsEndpoint | null;
  /** GET /quotas: each institution's and virtual key's windows; null without limits to show. */
  quotas?: (() => unknown) | null;
  /** ADMIN_TOKEN; null: the admin port is open to whoever reaches it. */
  token?: string | null;
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(body);
}

/** The proxy's one error shape (describeError), so a probe or scraper reads the same body as a client. */
function fail(res: http.ServerResponse, err: ProxyError, headers: Record<string, string> = {}): void {
  const { status, body, headers: own } = describeError(err);
  res.writeHead(status, { ...own, 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(body);
}

async function serveMetrics(metrics: MetricsEndpoint, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const openMetrics = (req.headers.accept ?? '').includes('application/openmetrics-text');
  const { contentType, body } = await metrics.render(openMetrics);
  res.writeHead(200, { 'content-type': contentType });
  res.end(body);
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Compares digests, equal in length whatever was sent, in constant time (no timing oracle on the token). */
function bearerMatches(header: string | undefined, expected: Buffer): boolean {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
  return timingSafeEqual(digest(match?.[1] ?? ''), expected) && match !== null;
}

export function createAdminServer(options: AdminOptions): http.Server {
  const token = options.token ?? null;
  const expected = token === null ? null : digest(token);
  const quotas = options.quotas ?? null;
  return http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return fail(res, new MethodNotAllowedError(`${req.method ?? ''} is not served on the admin port; use GET`), { allow: 'GET, HEAD' });
    }
    // Probes stay open: a kubelet or load balancer has no token to send.
    if (path === '/healthz') return json(res, 200, options.health());
    if (path === '/readyz') {
      const state = options.ready();
      return json(res, state.ready ? 200 : 503, state);
    }
    if (expected !== null && !bearerMatches(req.headers.authorization, expected)) {
      return fail(res, new AdminUnauthorizedError('this admin endpoint requires ADMIN_TOKEN as a bearer token: Authorization: Bearer <token>'));
    }
    if (path === '/quotas' && quotas !== null) return json(res, 200, quotas());
    if (path === '/metrics' && options.metrics !== null) {
      serveMetrics(options.metrics, req, res).catch((err: unknown) => {
        log.error('rendering /metrics failed', { error: errorMessage(err) });
        if (!res.headersSent) fail(res, new InternalProxyError('rendering the metrics failed', { cause: err }));
      });
      return;
    }
    fail(res, new NotFoundError(`${path} is not served on the admin port: /healthz, /readyz${options.metrics === null ? '' : ', /metrics'}${quotas === null ? '' : ', /quotas'}`));
  });
}
