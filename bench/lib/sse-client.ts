// A streamed chat request with timestamps: time to first body byte and the arrival time of each
// SSE event, all relative to the moment the request was issued.
import http from 'node:http';
import { STREAM_CHUNKS, STREAM_REQUEST } from './payloads.ts';

export interface StreamTiming {
  status: number;
  contentType: string;
  ttfbMs: number;
  /** One entry per complete SSE event (`data: …`), in arrival order. */
  events: string[];
  eventMs: number[];
}

const BODY = Buffer.from(JSON.stringify(STREAM_REQUEST));
export const IDLE_TIMEOUT_MS = 10_000; // a stuck endpoint must fail the run, not hang it

export function timedStream(baseUrl: string, agent: http.Agent, apiKey: string): Promise<StreamTiming> {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${apiKey}`, 'content-length': BODY.length };
    const t0 = performance.now();
    const req = http.request(`${baseUrl}/v1/chat/completions`, { method: 'POST', agent, headers, timeout: IDLE_TIMEOUT_MS }, (res) => {
      const timing: StreamTiming = {
        status: res.statusCode ?? 0,
        contentType: res.headers['content-type'] ?? '',
        ttfbMs: -1,
        events: [],
        eventMs: [],
      };
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        const at = performance.now() - t0;
        if (timing.ttfbMs < 0) timing.ttfbMs = at;
        pending += text;
        for (let end = pending.indexOf('\n\n'); end !== -1; end = pending.indexOf('\n\n')) {
          timing.events.push(pending.slice(0, end));
          timing.eventMs.push(at);
          pending = pending.slice(end + 2);
        }
      });
      res.once('end', () => resolve(timing));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error(`no data for ${IDLE_TIMEOUT_MS} ms from ${baseUrl}`)));
    req.once('error', reject);
    req.end(BODY);
  });
}

/** Null when the stream has the emulator's exact shape: 20 chunks, a usage chunk, [DONE]. */
export function streamProblem(timing: StreamTiming): string | null {
  if (timing.status !== 200) return `status ${timing.status}`;
  if (!timing.contentType.startsWith('text/event-stream')) return `content-type ${timing.contentType}`;
  if (timing.events.length !== STREAM_CHUNKS + 2) return `${timing.events.length} SSE events, expected ${STREAM_CHUNKS + 2}`;
  const chunks = timing.events.slice(0, STREAM_CHUNKS).filter((event) => event.includes('"object":"chat.completion.chunk"'));
  if (chunks.length !== STREAM_CHUNKS) return `${chunks.length} chat.completion.chunk events, expected ${STREAM_CHUNKS}`;
  if (timing.events[STREAM_CHUNKS]?.includes('"total_tokens":59') !== true) return 'usage chunk missing';
  if (timing.events[STREAM_CHUNKS + 1] !== 'data: [DONE]') return 'data: [DONE] missing';
  return null;
}
