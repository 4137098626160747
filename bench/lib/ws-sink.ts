/**
 * A Realtime-like WebSocket upstream for the message-size probe. It fakes only the handshake
 * and a session.created event; it accepts messages up to 1 MiB and counts those announced larger
 * (refused with 1009 from their frame header, so it never buffers them). A proxy that enforces its
 * own limit never lets one reach it.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface WsSink {
  url: string;
  /** Messages over 1 MiB that reached the sink. */
  oversized: number;
  sessions: number;
  close(): Promise<void>;
}

export async function startWsSink(): Promise<WsSink> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 1024 * 1024 });
  await once(server, 'listening');
  const sink: WsSink = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    oversized: 0,
    sessions: 0,
    close: () => {
      for (const ws of server.clients) ws.terminate();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  server.on('connection', (ws) => {
    sink.sessions++;
    ws.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') sink.oversized++;
    });
    ws.send(JSON.stringify({ type: 'session.created', session: { id: 'sess_probe', object: 'realtime.session' } }));
  });
  return sink;
}
