// Before any timing: every endpoint must answer every scenario's request correctly (status, body
// shape, byte counts, forwarded headers), or the run stops here.
import http from 'node:http';
import type { Endpoint } from './endpoints.ts';
import { CHAT_REQUEST } from './payloads.ts';
import { IDLE_TIMEOUT_MS, streamProblem, timedStream } from './sse-client.ts';
import { download, upload } from './transfer.ts';

const ODD_SIZE = 1024 * 1024 + 12_345; // not a multiple of the 64 KiB block on purpose

interface Answer { status: number; headers: http.IncomingHttpHeaders; text: string }

function postChat(baseUrl: string): Promise<Answer> {
  const body = Buffer.from(JSON.stringify(CHAT_REQUEST));
  const headers = { 'content-type': 'application/json', authorization: 'Bearer sk-bench', 'content-length': body.length };
  return new Promise((resolve, reject) => {
    const req = http.request(`${baseUrl}/v1/chat/completions`, { method: 'POST', agent: false, headers, timeout: IDLE_TIMEOUT_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => { text += chunk; });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error(`no answer within ${IDLE_TIMEOUT_MS} ms`)));
    req.once('error', reject);
    req.end(body);
  });
}

function chatProblem(answer: Answer): string | null {
  if (answer.status !== 200) return `status ${answer.status}: ${answer.text.slice(0, 300)}`;
  if (answer.headers['content-type']?.startsWith('application/json') !== true) return `content-type ${String(answer.headers['content-type'])}`;
  if (answer.headers['x-request-id'] !== 'req_bench') return 'x-request-id not forwarded';
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.text);
  } catch {
    return `body is not JSON: ${answer.text.slice(0, 300)}`;
  }
  const ok = typeof parsed === 'object' && parsed !== null && 'object' in parsed && parsed.object === 'chat.completion'
    && 'choices' in parsed && Array.isArray(parsed.choices) && parsed.choices.length === 1;
  return ok ? null : `unexpected body ${answer.text.slice(0, 300)}`;
}

export async function verify(endpoint: Endpoint): Promise<void> {
  const fail = (what: string, problem: string): never => {
    throw new Error(`verification failed for ${endpoint.name} (${endpoint.baseUrl}), ${what}: ${problem}`);
  };
  const chat = chatProblem(await postChat(endpoint.baseUrl));
  if (chat !== null) fail('POST /v1/chat/completions', chat);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const stream = streamProblem(await timedStream(endpoint.baseUrl, agent));
    if (stream !== null) fail('streamed POST /v1/chat/completions', stream);
  } finally {
    agent.destroy();
  }

  const down = await download(endpoint.baseUrl, ODD_SIZE);
  if (down.status !== 200 || down.bytes !== ODD_SIZE) fail('GET /download', `status ${down.status}, ${down.bytes} of ${ODD_SIZE} bytes`);
  const up = await upload(endpoint.baseUrl, ODD_SIZE);
  if (up.status !== 200 || up.bytes !== ODD_SIZE) fail('POST /upload', `status ${up.status}, upstream counted ${up.bytes} of ${ODD_SIZE} bytes`);
}
