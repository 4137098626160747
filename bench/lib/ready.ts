// Free ports and readiness polling (50 ms period, 15 s budget, child's stderr in the error).
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { sleep } from './log.ts';
import { isRunning } from './processes.ts';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

export function httpOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
  });
}

export function logTail(logPath: string, bytes = 4000): string {
  try {
    const text = readFileSync(logPath, 'utf8');
    return text.length > bytes ? `…${text.slice(-bytes)}` : text || '(empty)';
  } catch {
    return '(no stderr captured)';
  }
}

export async function waitReady(name: string, child: ChildProcess, probe: () => Promise<boolean>, logPath: string): Promise<void> {
  const deadline = performance.now() + 15_000;
  while (performance.now() < deadline) {
    if (!isRunning(child)) {
      throw new Error(`${name} exited (code ${String(child.exitCode)}, signal ${String(child.signalCode)}) before it was ready; stderr:\n${logTail(logPath)}`);
    }
    if (await probe()) return;
    await sleep(50);
  }
  throw new Error(`${name} not ready after 15 s; stderr:\n${logTail(logPath)}`);
}
