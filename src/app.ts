/**
 * Builds a running proxy from a config: the client-facing server, the admin server and the
 * observers, with graceful draining. main.ts adds the process concerns (signals, exit).
 */
import type { Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { createAdminServer, type MetricsEndpoint } from './admin.ts';
import type { Config } from './config.ts';
import { every, errorMessage } from './log.ts';
import { ADMITTED, refusedBy, type AdmissionDecision, type AdmissionHook } from './proxy/admission.ts';
import { createDispatcher } from './proxy/dispatcher.ts';
import { WebSocketEgress } from './proxy/egress.ts';
import { CutByShutdownError, MethodNotAllowedError, ExpectationFailedError, ShuttingDownError, type ProxyError } from './proxy/errors.ts';
import { createForwarder, type BodyRewriter } from './proxy/forward.ts';
import { newExchange, Observers, type Exchange, type Observer } from './proxy/observer.ts';
import { writeRawError } from './proxy/raw-response.ts';
import { REQUEST_ID_HEADER } from './proxy/headers.ts';
import { Router } from './proxy/routes.ts';
import { createProxyServer } from './proxy/server.ts';
import { createWebSocketProxy } from './proxy/websocket.ts';
import { VERSION } from './version.ts';

export interface Components {
  observers: Observer[];
  /** Extra refusal checks (e.g. AUDIT_REQUIRED with an unwritable journal); /readyz asks them too. */
  admission: Array<() => ProxyError | null>;
  /** Whose exchange this is and what to rewrite for it (POLICY_FILE); asked first, per exchange. */
  identity?: AdmissionHook;
  bodyRewriter?: BodyRewriter;
  metrics: MetricsEndpoint | null;
  /** GET /quotas on the admin port (the limiter's report, with POLICY_FILE). */
  quotas?: () => unknown;
  health: () => Record<string, unknown>;
  /** Counts a tap failure (metrics); logging is done here. */
  onTapFailure?: (stage: string) => void;
}

export interface RunningProxy {
  url: string;
  adminUrl: string;
  /** Stops accepting, lets in-flight exchanges finish within graceMs, then cuts the rest. */
  drain(graceMs: number): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const { address, port: bound } = server.address() as AddressInfo;
      resolve(`${address.includes(':') ? `[${address}]` : address}:${bound}`);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

// What a 405 to CONNECT lists (RFC 9110 §15.5.6): the methods the OpenAI API is called with.
const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

export async function startProxy(config: Config, components: Components): Promise<RunningProxy> {
  const startedAt = Date.now();
  let draining = false;
  // Set when the grace period is over and what is left is cut: those exchanges are the shutdown's.
  let cutting = false;
  const cutReason = (): ProxyError | null =>
    cutting ? new CutByShutdownError('the proxy shut down before the exchange was complete (SHUTDOWN_GRACE_MS ran out)') : null;
  const dispatcher: Dispatcher = createDispatcher(config);
  const router = new Router(config.upstreamUrl, config.routes);
  const egress = new WebSocketEgress(config.egressProxy);
  const observers = new Observers((err, stage) => {
    components.onTapFailure?.(stage);
    every(`tap:${stage}`, 10_000, 'error', 'observer failed; the exchange went on', { stage, error: errorMessage(err) });
  });
  for (const observer of components.observers) observers.add(observer);
  const dropHeaders = new Set([config.audit.institutionHeader]);
  if (config.forwardedHeaders) for (const h of ['x-forwarded-for', 'x-forwarded-proto']) dropHeaders.add(h);
  const checks = (): ProxyError | null => {
    for (const check of components.admission) {
      const refused = check();
      if (refused !== null) return refused;
    }
    return null;
  };
  const identity = components.identity;
  // Identity first, so that a request the checks refuse is still recorded as its institution's.
  const afterIdentity = (decision: AdmissionDecision): AdmissionDecision => {
    if (decision.refusal !== null) return decision;
    const refused = checks();
    return refused === null ? decision : refusedBy(refused, decision.identity);
  };
  const admission = (exchange: Exchange): AdmissionDecision | Promise<AdmissionDecision> => {
    const decision = identity === undefined ? ADMITTED : identity(exchange);
    // Async only when a limit is counted in MongoDB; then the checks run once it has answered.
    return decision instanceof Promise ? decision.then(afterIdentity) : afterIdentity(decision);
  };

  const forward = createForwarder({
    dispatcher,
    router,
    observers,
    dropHeaders,
    forwardedHeaders: config.forwardedHeaders,
    admission,
    bodyRewriter: components.bodyRewriter,
    bodyTimeoutMs: config.client.bodyTimeoutMs,
    cutReason,
  });
  const upgrade = createWebSocketProxy({
    router,
    observers,
    dropHeaders,
    // Unlike a request on a kept-alive connection, a new session would outlive the drain.
    admission: (exchange) => (draining ? refusedBy(new ShuttingDownError('proxy is shutting down')) : admission(exchange)),
    upstreamCa: config.upstreamCa,
    handshakeTimeoutMs: Math.min(config.upstreamTimeoutMs, 60_000),
    egressAgent: (origin) => egress.agentFor(origin),
    maxMessageBytes: config.client.wsMaxMessageBytes,
    cutReason,
  });
  const upgraded = new Set<Duplex>();
  // node:http hands over an upgrade pipelined behind a request at once; answering it then would
  // interleave two responses on one connection, so it waits for the response in progress.
  const answering = new WeakMap<Duplex, ServerResponse>();
  const server = createProxyServer(config, {
    request(req, res) {
      // Exchanges on a kept-alive connection still finish while draining, but the connection closes after.
      if (draining) res.setHeader('connection', 'close');
      answering.set(req.socket, res);
      res.once('close', () => answering.get(req.socket) === res && answering.delete(req.socket));
      forward.forward(req, res);
    },
    expectation(req, res) {
      forward.refuse(req, res, new ExpectationFailedError(`unsupported Expect: ${String(req.headers.expect)} (only 100-continue is)`));
    },
    upgrade(req, socket, head) {
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
      const inProgress = answering.get(socket);
      if (inProgress === undefined) upgrade(req, socket, head);
      else inProgress.once('close', () => upgrade(req, socket, head));
    },
    connect(req, socket) {
      // Recorded like any refused request: clients set as HTTPS_PROXY send this.
      const exchange = newExchange(req, 'http');
      const taps = observers.start(exchange);
      exchange.error = new MethodNotAllowedError('CONNECT is not supported: this proxy is an API base URL, not a forward proxy');
      socket.on('error', () => socket.destroy());
      socket.once('close', () => {
        exchange.endHr = performance.now();
        taps.end();
      });
      writeRawError(socket, exchange.error, { allow: ALLOWED_METHODS, [REQUEST_ID_HEADER]: exchange.id });
    },
    brokenRequest(socket, err) {
      const res = answering.get(socket);
      return res !== undefined && forward.failRequest(res, err);
    },
    refused() {
      every('client:refused', 10_000, 'warn', 'connection refused: MAX_CLIENT_CONNECTIONS are open', { max: config.client.maxConnections });
    },
  });
  const admin = createAdminServer({
    health: () => ({ status: 'ok', version: VERSION, uptimeSeconds: (Date.now() - startedAt) / 1000, draining, ...components.health() }),
    ready: () => {
      if (draining) return { ready: false, reason: 'draining' };
      const refused = checks();
      return refused === null ? { ready: true } : { ready: false, reason: refused.code };
    },
    metrics: components.metrics,
    quotas: components.quotas ?? null,
    token: config.adminToken,
  });

  const scheme = config.tls === null ? 'http' : 'https';
  const address = await listen(server, config.port, config.host);
  const adminAddress = await listen(admin, config.adminPort, config.adminHost);

  return {
    url: `${scheme}://${address}`,
    adminUrl: `http://${adminAddress}`,
    async drain(graceMs) {
      draining = true;
      const closed = closeServer(server);
      const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref());
      await Promise.race([closed, grace]);
      cutting = true;
      server.closeAllConnections();
      for (const socket of upgraded) socket.destroy();
      await closed;
      await Promise.all([closeServer(admin), dispatcher.close()]);
    },
  };
}
