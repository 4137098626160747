/**
 * Test OTLP/HTTP trace receiver on 127.0.0.1: takes what @opentelemetry/exporter-trace-otlp-http sends
 * (POST /v1/traces, application/json, optionally gzip) and flattens the spans for assertions. It fakes a
 * collector's front door only: no protobuf, no gRPC, no partial success, no auth, no metrics or logs.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';

/** An OTLP AnyValue as plain data; int64 comes back as a number, bytes as their base64 text. */
export type AttributeValue = string | number | boolean | null | AttributeValue[] | { [key: string]: AttributeValue };
export type Attributes = Record<string, AttributeValue>;

export const SpanKind = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;
export const StatusCode = { UNSET: 0, OK: 1, ERROR: 2 } as const;

export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** Undefined for a root span. */
  parentSpanId: string | undefined;
  name: string;
  /** OTLP numbering: 1 INTERNAL, 2 SERVER, 3 CLIENT, 4 PRODUCER, 5 CONSUMER. */
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Attributes;
  events: { name: string; timeNs: bigint; attributes: Attributes }[];
  /** 0 UNSET, 1 OK, 2 ERROR. */
  status: { code: number; message?: string };
  resource: Attributes;
  scope: { name: string; version?: string };
}

/** What one export request looked like on the wire. */
export interface ReceivedExport {
  contentType: string | undefined;
  contentEncoding: string | undefined;
  bytes: number;
  spans: number;
}

export interface OtlpReceiver {
  /** Base URL, for OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces). */
  url: string;
  spans: ReceivedSpan[];
  exports: ReceivedExport[];
  /** Resolves with the spans matching `predicate` once at least `count` of them have arrived. */
  waitForSpans(predicate: (span: ReceivedSpan) => boolean, timeoutMs?: number, count?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

// ---------- OTLP JSON (opentelemetry-proto docs/specification.md, "JSON Protobuf Encoding") ----------

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number | string;
  bytesValue?: string;
  arrayValue?: { values?: JsonAnyValue[] };
  kvlistValue?: { values?: JsonKeyValue[] };
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}
interface JsonSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind?: number;
  startTimeUnixNano: string | number;
  endTimeUnixNano: string | number;
  attributes?: JsonKeyValue[];
  events?: { name: string; timeUnixNano: string | number; attributes?: JsonKeyValue[] }[];
  status?: { code?: number; message?: string };
}
interface JsonExportRequest {
  resourceSpans?: {
    resource?: { attributes?: JsonKeyValue[] };
    scopeSpans?: { scope?: { name?: string; version?: string }; spans?: JsonSpan[] }[];
  }[];
}

function decodeValue(value: JsonAnyValue | undefined): AttributeValue {
  if (value === undefined) return null;
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.boolValue !== undefined) return value.boolValue;
  if (value.intValue !== undefined) return Number(value.intValue);
  if (value.doubleValue !== undefined) return Number(value.doubleValue);
  if (value.bytesValue !== undefined) return value.bytesValue;
  if (value.arrayValue !== undefined) return (value.arrayValue.values ?? []).map(decodeValue);
  if (value.kvlistValue !== undefined) return decodeAttributes(value.kvlistValue.values);
  return null;
}

function decodeAttributes(list: JsonKeyValue[] | undefined): Attributes {
  const out: Attributes = {};
  for (const { key, value } of list ?? []) out[key] = decodeValue(value);
  return out;
}

function decodeRequest(body: JsonExportRequest): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = decodeAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      const scope = { name: ss.scope?.name ?? '', ...(ss.scope?.version === undefined ? {} : { version: ss.scope.version }) };
      for (const s of ss.spans ?? []) {
        spans.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId === undefined || s.parentSpanId === '' ? undefined : s.parentSpanId,
          name: s.name,
          kind: s.kind ?? 0,
          startNs: BigInt(s.startTimeUnixNano),
          endNs: BigInt(s.endTimeUnixNano),
          attributes: decodeAttributes(s.attributes),
          events: (s.events ?? []).map((e) => ({ name: e.name, timeNs: BigInt(e.timeUnixNano), attributes: decodeAttributes(e.attributes) })),
          status: { code: s.status?.code ?? 0, ...(s.status?.message ? { message: s.status.message } : {}) },
          resource,
          scope,
        });
      }
    }
  }
  return spans;
}

// ---------- server ----------

const gunzipAsync = promisify(gunzip);

function reply(res: http.ServerResponse, status: number, body: string, type = 'text/plain'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) }).end(body);
}

interface Waiter {
  predicate: (span: ReceivedSpan) => boolean;
  count: number;
  resolve: (spans: ReceivedSpan[]) => void;
}

class Receiver implements OtlpReceiver {
  url = '';
  spans: ReceivedSpan[] = [];
  exports: ReceivedExport[] = [];
  #waiters = new Set<Waiter>();
  readonly #server = http.createServer((req, res) => {
    this.#handle(req, res).catch((err: unknown) => reply(res, 500, `receiver bug: ${String(err)}`));
  });

  async listen(): Promise<void> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    if (req.method !== 'POST' || req.url !== '/v1/traces') return reply(res, 404, 'only POST /v1/traces is received');
    const contentType = req.headers['content-type'];
    const contentEncoding = req.headers['content-encoding'];
    if (!/^application\/json\b/i.test(contentType ?? '')) return reply(res, 415, 'only application/json is faked (no protobuf)');
    if (contentEncoding !== undefined && contentEncoding !== 'gzip' && contentEncoding !== 'identity') {
      return reply(res, 415, `unsupported content-encoding ${contentEncoding}`);
    }
    const raw = Buffer.concat(chunks);
    let spans: ReceivedSpan[];
    try {
      const text = (contentEncoding === 'gzip' ? await gunzipAsync(raw) : raw).toString('utf8');
      spans = decodeRequest(JSON.parse(text) as JsonExportRequest);
    } catch (err) {
      return reply(res, 400, `undecodable export: ${String(err)}`);
    }
    this.exports.push({ contentType, contentEncoding, bytes: raw.length, spans: spans.length });
    this.spans.push(...spans);
    reply(res, 200, '{}', 'application/json');
    for (const waiter of this.#waiters) this.#check(waiter);
  }

  #check(waiter: Waiter): boolean {
    const matching = this.spans.filter(waiter.predicate);
    if (matching.length < waiter.count) return false;
    this.#waiters.delete(waiter);
    waiter.resolve(matching);
    return true;
  }

  waitForSpans(predicate: (span: ReceivedSpan) => boolean, timeoutMs = 5000, count = 1): Promise<ReceivedSpan[]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        const seen = this.spans.map((s) => `${s.name} (${s.traceId.slice(0, 8)})`).join(', ') || 'none';
        reject(new Error(`fewer than ${count} matching spans within ${timeoutMs} ms; received: ${seen}`));
      }, timeoutMs);
      const waiter: Waiter = {
        predicate,
        count,
        resolve: (spans) => {
          clearTimeout(timer);
          resolve(spans);
        },
      };
      this.#waiters.add(waiter);
      this.#check(waiter);
    });
  }

  async close(): Promise<void> {
    const closed = once(this.#server, 'close');
    this.#server.close();
    // The exporter keeps its connection alive; close() alone would wait for it.
    this.#server.closeAllConnections();
    await closed;
  }
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const receiver = new Receiver();
  await receiver.listen();
  return receiver;
}
