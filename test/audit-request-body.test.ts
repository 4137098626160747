/**
 * The request body tap of the audit trail: every byte reaches upstream and the record, whoever
 * reads the body first and however late undici starts sending it; a body upstream never took is
 * still recorded; a client gone mid-upload still cancels upstream.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { recordOf, waitForRecords } from './support/audit.ts';
import { until } from './support/net.ts';
import { startTestProxy, type TestProxy } from './support/proxy.ts';
import { startUpstream, type Upstream } from './support/upstream.ts';

let upstream: Upstream;
let proxy: TestProxy;

function auditEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { AUDIT_ENABLED: 'true', AUDIT_DIR: mkdtempSync(join(tmpdir(), 'audit-body-')), AUDIT_MAX_BODY_BYTES: '4096', ...extra };
}

before(async () => {
  upstream = await startUpstream();
  // One upstream connection, so that an upload can be kept waiting behind a slow request.
  proxy = await startTestProxy({ UPSTREAM_URL: upstream.url, UPSTREAM_MAX_CONNECTIONS: '1', ...auditEnv() });
});

after(async () => {
  await proxy.close();
  await upstream.close();
});

/** A body of `total` bytes in chunks of uneven sizes, each byte depending on its offset. */
function unevenChunks(total: number): Buffer[] {
  const sizes = [1, 7, 4093, 65_536, 100_003, 13];
  const chunks: Buffer[] = [];
  for (let offset = 0, n = 0; offset < total; n++) {
    const size = Math.min(sizes[n % sizes.length] ?? 1, total - offset);
    chunks.push(Buffer.from(Array.from({ length: size }, (_, i) => (offset + i) % 251)));
    offset += size;
  }
  return chunks;
}

function sha256(chunks: readonly Buffer[]): string {
  const hash = createHash('sha256');
  for (const chunk of chunks) hash.update(chunk);
  return hash.digest('hex');
}

/** Uploads the chunks (chunked encoding) to /sink; the upstream answers with what it received. */
async function upload(url: string, chunks: readonly Buffer[]): Promise<{ id: string; received: { bytes: number; sha256: string } }> {
  const res = await request(`${url}/sink`, { method: 'POST', body: Readable.from(chunks, { objectMode: false }) });
  const received = (await res.body.json()) as { bytes: number; sha256: string };
  return { id: String(res.headers['x-proxy-request-id']), received };
}

describe('an uploaded body is tapped without losing a byte', () => {
  test('a large chunked upload reaches upstream intact and is recorded whole', async () => {
    const chunks = unevenChunks(24 * 1024 * 1024 + 5);
    const expected = { bytes: 24 * 1024 * 1024 + 5, sha256: sha256(chunks) };
    const { id, received } = await upload(proxy.url, chunks);
    assert.deepEqual(received, expected);
    const record = await recordOf(proxy, id);
    assert.deepEqual({ bytes: record.request.bytes, sha256: record.request.sha256 }, expected);
    assert.equal(record.request.truncated, true, 'the capture keeps only its first 4 KiB');
  });

  test('an upload that waits for an upstream connection loses no first chunk', async () => {
    const slow = request(`${proxy.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4o', messages: [] }),
      headers: { 'content-type': 'application/json', 'x-test-delay-ms': '300' },
    });
    await until(() => upstream.requests.some((r) => r.headers['x-test-delay-ms'] === '300'));
    const chunks = unevenChunks(2 * 1024 * 1024);
    const { id, received } = await upload(proxy.url, chunks);
    assert.deepEqual(received, { bytes: 2 * 1024 * 1024, sha256: sha256(chunks) });
    const record = await recordOf(proxy, id);
    assert.deepEqual({ bytes: record.request.bytes, sha256: record.request.sha256 }, received);
    await (await slow).body.dump();
  });
});

describe('a body upstream never took', () => {
  test('is still recorded, with the client address and the model', async () => {
    const down = await startTestProxy({ UPSTREAM_URL: 'http://127.0.0.1:1', ...auditEnv({ AUDIT_MAX_BODY_BYTES: '1048576' }) });
    try {
      const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
      const res = await request(`${down.url}/v1/chat/completions`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      assert.equal(res.statusCode, 502);
      await res.body.dump();
      const record = await recordOf(down, String(res.headers['x-proxy-request-id']));
      assert.equal(record.outcome, 'upstream_unreachable');
      assert.equal(record.request.bytes, Buffer.byteLength(body));
      assert.equal(record.openai?.requestModel, 'gpt-4o-mini');
      assert.equal(record.client.address, '127.0.0.1');

      // Larger than what is read ahead: the request is abandoned mid-body, and still recorded.
      const large = `{"model":"gpt-4o-mini","pad":"${'x'.repeat(300_000)}"}`;
      await request(`${down.url}/v1/chat/completions`, { method: 'POST', body: large, headers: { 'content-type': 'application/json' } })
        .then((r) => r.body.dump())
        .catch(() => undefined); // the proxy may answer 502 before the client has sent it all
      const records = await waitForRecords(down, 2);
      const abandoned = records.find((r) => r._id !== record._id);
      assert.equal(abandoned?.outcome, 'upstream_unreachable');
      assert.equal(abandoned?.client.address, '127.0.0.1');
      assert.ok((abandoned?.request.bytes ?? 0) > 0);
    } finally {
      await down.close();
    }
  });
});

describe('a client gone mid-upload', () => {
  test('cancels the upstream request and is recorded as client_aborted', async () => {
    const aborted = upstream.aborted;
    const appended = proxy.runtime.journal?.stats.appended ?? 0;
    const url = new URL(proxy.url);
    const socket = net.connect(Number(url.port), url.hostname);
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write('POST /sink HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n');
    socket.write(Buffer.alloc(200_000, 1));
    await until(() => upstream.requests.some((r) => r.url === '/sink' && r.headers['content-length'] === '10000000'));
    socket.destroy();
    await upstream.waitForAborted(aborted + 1);
    const records = await waitForRecords(proxy, appended + 1);
    const record = records.find((r) => r.request.path === '/sink' && r.request.headers['content-length'] === '10000000');
    assert.equal(record?.outcome, 'client_aborted');
    assert.ok((record?.request.bytes ?? 0) > 0);
  });
});
