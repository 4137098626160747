// Tests for the response relay: every byte in order with backpressure, and each way it can fail
// reported once (the end-to-end failure cases through the proxy are in proxy-failures.test.ts).
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { setImmediate as tick } from 'node:timers/promises';
import { PassThrough, Readable, Transform, Writable } from 'node:stream';
import { test } from 'node:test';
import { PrematureCloseError, relay } from '../src/proxy/relay.ts';

/** A destination that takes one chunk per macrotask and keeps what it got. */
function slowSink(): Writable & { received: Buffer[] } {
  const received: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 16,
    write(chunk: Buffer, _encoding, callback) {
      received.push(chunk);
      setImmediate(callback);
    },
  });
  return Object.assign(sink, { received });
}

/** Resolves on 'close', which events.once would not wait for after an 'error'. */
function closed(stream: Readable | Writable): Promise<void> {
  return new Promise((resolve) => stream.once('close', () => resolve()));
}

function upperCase(): Transform {
  return new Transform({ transform: (chunk: Buffer, _encoding, callback) => callback(null, chunk.toString().toUpperCase()) });
}

function recordFailures(): { failures: Error[]; onFailure: (err: Error) => void } {
  const failures: Error[] = [];
  return { failures, onFailure: (err) => failures.push(err) };
}

test('relays every chunk in order, holding the source back while the destination is full', async () => {
  const chunks = Array.from({ length: 200 }, (_, i) => Buffer.from(`chunk ${i};`));
  let wanted = (): void => undefined;
  const source = new Readable({ highWaterMark: 64, read: () => wanted() });
  const sink = slowSink();
  const { failures, onFailure } = recordFailures();
  relay(source, null, sink, onFailure);
  let maxBuffered = 0;
  for (const chunk of chunks) {
    // Backpressure: once push() says stop, the next chunk waits until the relay reads again.
    if (!source.push(chunk)) await new Promise<void>((resolve) => (wanted = resolve));
    maxBuffered = Math.max(maxBuffered, source.readableLength + sink.writableLength);
  }
  source.push(null);
  await once(sink, 'finish');
  assert.equal(Buffer.concat(sink.received).toString(), Buffer.concat(chunks).toString());
  assert.ok(maxBuffered <= 64 + 16 + 16, `${maxBuffered} bytes were held between source and destination`);
  assert.deepEqual(failures, []);
});

test('relays through a transform and ends the destination', async () => {
  const sink = slowSink();
  const { failures, onFailure } = recordFailures();
  relay(Readable.from([Buffer.from('data: a\n\n'), Buffer.from('data: b\n\n')]), upperCase(), sink, onFailure);
  await once(sink, 'finish');
  assert.equal(Buffer.concat(sink.received).toString(), 'DATA: A\n\nDATA: B\n\n');
  assert.deepEqual(failures, []);
});

test('a failing source is reported once, and the transform is destroyed', async () => {
  const source = new PassThrough();
  const transform = upperCase();
  const { failures, onFailure } = recordFailures();
  relay(source, transform, slowSink(), onFailure);
  source.write('partial');
  const broken = new Error('socket reset');
  source.destroy(broken);
  await closed(source);
  await tick();
  assert.deepEqual(failures, [broken]);
  assert.equal(transform.destroyed, true);
});

test('a source that closes before its end without an error is a premature close', async () => {
  const source = new PassThrough();
  const sink = slowSink();
  const { failures, onFailure } = recordFailures();
  relay(source, null, sink, onFailure);
  source.write('partial');
  source.destroy();
  await closed(source);
  assert.equal(failures.length, 1);
  assert.ok(failures[0] instanceof PrematureCloseError);
  assert.equal(failures[0].code, 'ERR_STREAM_PREMATURE_CLOSE');
  assert.equal(sink.writableEnded, false, 'a cut body must not end the destination as if it were whole');
});

test('a failing transform is reported once', async () => {
  const source = new PassThrough();
  const broken = new Error('cannot rewrite');
  const transform = new Transform({ transform: (_chunk, _encoding, callback) => callback(broken) });
  const { failures, onFailure } = recordFailures();
  relay(source, transform, slowSink(), onFailure);
  source.write('anything');
  await closed(transform);
  assert.deepEqual(failures, [broken]);
});

test('an error on the destination is reported, never thrown', async () => {
  const source = new PassThrough();
  const broken = new Error('write failed');
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback(broken) });
  const { failures, onFailure } = recordFailures();
  relay(source, null, sink, onFailure);
  source.write('anything');
  await closed(sink);
  assert.deepEqual(failures, [broken]);
});
