// Before any timing: every endpoint must answer every scenario's request correctly (status, body
// shape, byte counts, forwarded headers), and the policy variants must be applying their policy,
// or the run stops here.
import http from 'node:http';
import type { Endpoint } from './endpoints.ts';
import { CHAT_REQUEST } from './payloads.ts';
import { sleep } from './log.ts';
import { INSTITUTION, REQUEST_LIMIT } from './policy.ts';
import { IDLE_TIMEOUT_MS, streamProblem, timedStream } from './sse-client.ts';
import { download, upload } from './transfer.ts';

const ODD_SIZE = 1024 * 1024 + 12_345; // not a multiple of the 64 KiB block on purpose

interface Answer { status: number; headers: http.IncomingHttpHeaders; text: string }

/** A proxy-issued key no policy lists: a proxy with a policy refuses it, one without forwards it. */
const UNKNOWN_VIRTUAL_KEY = `sk-proxy-${'0'.repeat(43)}`;

function postChat(baseUrl: string, apiKey: string): Promise<Answer> {
  const body = Buffer.from(JSON.stringify(CHAT_REQUEST));
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${apiKey}`, 'content-length': body.length };
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

async function adminText(endpoint: Endpoint, path: string): Promise<string> {
  const response = await fetch(`${endpoint.adminUrl ?? ''}${path}`);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`verification failed for ${endpoint.name}: admin ${path} answered ${response.status}: ${text.slice(0, 300)}`);
  return text;
}

/** Whether the metrics count an exchange of the institution; they are updated after the exchange, so it is asked for up to 3 s. */
async function institutionCounted(endpoint: Endpoint): Promise<boolean> {
  for (let attempt = 0; attempt < 60; attempt++) {
    const metrics = await adminText(endpoint, '/metrics');
    const series = metrics.split('\n').filter((line) => line.startsWith('openai_proxy_requests_total{'));
    if (series.some((line) => line.includes(`institution="${INSTITUTION}"`))) return true;
    await sleep(50);
  }
  return false;
}

function refusalProblem(answer: Answer): string | null {
  if (answer.status !== 401) return `status ${answer.status}, not 401: ${answer.text.slice(0, 300)}`;
  return answer.text.includes('"code":"invalid_api_key"') ? null : `no invalid_api_key code: ${answer.text.slice(0, 300)}`;
}

/**
 * The policy variants decide identity from their file: an unknown `sk-proxy-` key is refused, the
 * virtual key's exchanges are the institution's (in the metrics' label) and, with the limit, counted
 * in its window (/quotas). proxy+default, their reference, must forward that same unknown key.
 */
async function verifyPolicy(endpoint: Endpoint, fail: (what: string, problem: string) => never): Promise<void> {
  if (endpoint.adminUrl === null) return; // the pipes, the upstream, self-test stand-ins
  const unknown = await postChat(endpoint.baseUrl, UNKNOWN_VIRTUAL_KEY);
  if (endpoint.policy === null) {
    if (endpoint.name === 'proxy+default' && unknown.status !== 200) fail('an unknown sk-proxy- key without a policy', `status ${unknown.status}, not forwarded`);
    return;
  }
  const refused = refusalProblem(unknown);
  if (refused !== null) fail('an unknown sk-proxy- key', refused);
  if (!(await institutionCounted(endpoint))) {
    fail('GET /metrics', `no openai_proxy_requests_total series with institution="${INSTITUTION}": the virtual key was not recognised`);
  }
  if (!endpoint.policy.limited) return;
  const quotas: unknown = JSON.parse(await adminText(endpoint, '/quotas'));
  const windows = typeof quotas === 'object' && quotas !== null && 'institutions' in quotas && typeof quotas.institutions === 'object' && quotas.institutions !== null
    ? (quotas.institutions as Record<string, unknown>)[INSTITUTION]
    : undefined;
  const counted = Array.isArray(windows) && windows.some((w: unknown) => typeof w === 'object' && w !== null && 'window' in w && w.window === REQUEST_LIMIT.window
    && 'kind' in w && w.kind === 'requests' && 'limit' in w && w.limit === REQUEST_LIMIT.requests && 'used' in w && typeof w.used === 'number' && w.used >= 1);
  if (!counted) fail('GET /quotas', `no ${REQUEST_LIMIT.window} request window of ${INSTITUTION} that counted the request: ${JSON.stringify(quotas).slice(0, 300)}`);
}

export async function verify(endpoint: Endpoint): Promise<void> {
  const fail = (what: string, problem: string): never => {
    throw new Error(`verification failed for ${endpoint.name} (${endpoint.baseUrl}), ${what}: ${problem}`);
  };
  const chat = chatProblem(await postChat(endpoint.baseUrl, endpoint.apiKey));
  if (chat !== null) fail('POST /v1/chat/completions', chat);
  await verifyPolicy(endpoint, fail);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const stream = streamProblem(await timedStream(endpoint.baseUrl, agent, endpoint.apiKey));
    if (stream !== null) fail('streamed POST /v1/chat/completions', stream);
  } finally {
    agent.destroy();
  }

  const down = await download(endpoint.baseUrl, ODD_SIZE);
  if (down.status !== 200 || down.bytes !== ODD_SIZE) fail('GET /download', `status ${down.status}, ${down.bytes} of ${ODD_SIZE} bytes`);
  const up = await upload(endpoint.baseUrl, ODD_SIZE);
  if (up.status !== 200 || up.bytes !== ODD_SIZE) fail('POST /upload', `status ${up.status}, upstream counted ${up.bytes} of ${ODD_SIZE} bytes`);
}
