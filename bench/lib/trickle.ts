// Connections that hold the proxy without finishing anything: each sends `prefix` at once, then
// one byte of `drip` every `gapMs` (never, with gapMs 0), and never completes. With `reopen`,
// a connection the proxy closes is replaced, so the pressure stays at `count`. Loopback only.
import net from 'node:net';

export interface TrickleOptions {
  port: number;
  count: number;
  prefix: string;
  /** Cycled one byte per gap. */
  drip: string;
  gapMs: number;
  reopen?: boolean;
}

export interface Conn {
  connectedAt: number;
  /** performance.now() when the proxy closed it; null while open or when we closed it. */
  closedByPeerAt: number | null;
  /** The first bytes the proxy sent (e.g. a 408), if any. */
  answer: string;
}

export class Trickle {
  private readonly sockets = new Map<net.Socket, Conn>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;
  /** Every connection made, open or closed, in connect order. */
  readonly conns: Conn[] = [];
  failedToConnect = 0;

  constructor(private readonly options: TrickleOptions) {}

  get open(): number {
    return this.sockets.size;
  }

  get opened(): number {
    return this.conns.length;
  }

  get closedByPeer(): Conn[] {
    return this.conns.filter((conn) => conn.closedByPeerAt !== null);
  }

  /** Lifetime of each connection the proxy closed, and the age of each still open, in ms. */
  lifetimes(now = performance.now()): { closed: number[]; open: number[] } {
    const closed: number[] = [];
    const open: number[] = [];
    for (const conn of this.conns) {
      if (conn.closedByPeerAt !== null) closed.push(conn.closedByPeerAt - conn.connectedAt);
    }
    for (const conn of this.sockets.values()) open.push(now - conn.connectedAt);
    return { closed, open };
  }

  /** Opens `count` connections, a batch at a time so the listen backlog never overflows. */
  async start(batch = 100): Promise<void> {
    for (let done = 0; done < this.options.count && !this.stopped; done += batch) {
      const n = Math.min(batch, this.options.count - done);
      await Promise.all(Array.from({ length: n }, () => this.connect()));
    }
  }

  private drip(socket: net.Socket): void {
    let sent = 0;
    const { drip, gapMs } = this.options;
    // Spread the drips so that not every connection writes in the same tick.
    const first = setTimeout(() => {
      this.timers.delete(first);
      const tick = setInterval(() => {
        if (!socket.destroyed) socket.write(drip[sent++ % drip.length] ?? ' ');
      }, gapMs);
      this.timers.add(tick);
      socket.once('close', () => {
        clearInterval(tick);
        this.timers.delete(tick);
      });
    }, Math.random() * gapMs);
    this.timers.add(first);
    socket.once('close', () => {
      clearTimeout(first);
      this.timers.delete(first);
    });
  }

  private connect(): Promise<void> {
    return new Promise((resolve) => {
      const socket = net.connect(this.options.port, '127.0.0.1');
      let conn: Conn | null = null;
      socket.setNoDelay(true);
      socket.on('data', (chunk: Buffer) => {
        if (conn !== null && conn.answer.length < 200) conn.answer += chunk.toString('latin1', 0, 200 - conn.answer.length);
      });
      socket.once('connect', () => {
        conn = { connectedAt: performance.now(), closedByPeerAt: null, answer: '' };
        this.conns.push(conn);
        this.sockets.set(socket, conn);
        if (this.options.prefix !== '') socket.write(this.options.prefix);
        if (this.options.gapMs > 0 && this.options.drip !== '') this.drip(socket);
        resolve();
      });
      socket.once('error', () => {
        if (conn === null) {
          this.failedToConnect++;
          resolve();
        }
      });
      socket.once('close', () => {
        this.sockets.delete(socket);
        if (conn === null || this.stopped) return; // never connected, or closed by us
        conn.closedByPeerAt = performance.now();
        if (this.options.reopen === true) void this.connect();
      });
      socket.on('end', () => socket.end());
    });
  }

  /** Stops replacing connections and closes every one still open. */
  close(): void {
    this.stopped = true;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const socket of this.sockets.keys()) socket.destroy();
  }
}
