// Hand-written HTTP/1.1 on a raw socket, for the requests no client library sends as written
// (absolute-form targets, dot segments, a missing Host, h2c, CONNECT, broken chunking) and for
// reading exactly what the proxy answered.
import net from 'node:net';

export interface RawResponse {
  /** 0 when the connection closed (or the time ran out) before a status line. */
  status: number;
  headers: Record<string, string>;
  body: string;
  /** What was received, whole, for reports. */
  raw: string;
  error: string | null;
}

function parse(raw: string, error: string | null): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  const head = end === -1 ? raw : raw.slice(0, end);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status, headers, body: end === -1 ? '' : raw.slice(end + 4), raw, error };
}

/** Complete once a final (non-1xx) response with its Content-Length body has arrived. */
function complete(raw: string): boolean {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const response = parse(raw, null);
  if (response.status >= 100 && response.status < 200) return complete(raw.slice(end + 4));
  const length = response.headers['content-length'];
  return length !== undefined && Buffer.byteLength(response.body) >= Number(length);
}

/** Sends `request` on a new connection and resolves with the first final response (or what came). */
export function rawRequest(port: number, request: string | Buffer, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let raw = '';
    let settled = false;
    const finish = (error: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      let text = raw;
      // Skip interim responses: the caller wants the final one.
      while (/^HTTP\/1\.[01] 1\d\d /.test(text) && text.includes('\r\n\r\n')) text = text.slice(text.indexOf('\r\n\r\n') + 4);
      resolve(parse(text, error));
    };
    const timer = setTimeout(() => finish(`no complete response within ${timeoutMs} ms`), timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      raw += chunk;
      if (complete(raw)) finish(null);
    });
    socket.once('error', (err) => finish(err.message));
    socket.once('close', () => finish(null));
    socket.write(request);
  });
}

/** An OpenAI-shaped error body: {"error":{"message","type","param","code"}}. */
export function isOpenAiError(body: string): boolean {
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed !== 'object' || parsed === null || !('error' in parsed)) return false;
    const error: unknown = parsed.error;
    return typeof error === 'object' && error !== null && 'message' in error && 'type' in error && 'param' in error && 'code' in error;
  } catch {
    return false;
  }
}
