/** Known traffic through a test proxy, for the tests that check what metrics and dashboards see. */
import { once } from 'node:events';
import { request } from 'undici';
import { WebSocket } from 'ws';
import type { TestProxy } from './proxy.ts';

const KEY = 'Bearer sk-traffic-test';

/** A JSON POST; resolves with the status once the body has been read. */
export async function post(proxy: TestProxy, path: string, body: unknown, headers: Record<string, string> = {}): Promise<number> {
  const res = await request(`${proxy.url}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', authorization: KEY, ...headers },
  });
  await res.body.dump();
  return res.statusCode;
}

/** One Realtime session: a response.create answered by response.done, then a clean close (101). */
export async function realtimeSession(proxy: TestProxy): Promise<number> {
  const ws = new WebSocket(`${proxy.url.replace(/^http/, 'ws')}/v1/realtime?model=gpt-realtime`, { headers: { authorization: KEY } });
  const done = new Promise<void>((resolve, reject) => {
    ws.on('message', (data: Buffer) => {
      if (data.toString('utf8').includes('"response.done"')) resolve();
    });
    ws.on('error', reject);
  });
  await once(ws, 'open');
  ws.send(JSON.stringify({ type: 'response.create' }));
  await done;
  ws.close(1000);
  await once(ws, 'close');
  return 101;
}
