import { connect, type Socket } from 'node:net';
import type { ResolvedAddress } from './addresses.js';
import type { CredentialRefusal } from './task-egress.js';

/** Socket helpers of the egress proxy: its own error answers, bounded waits, exact connects. */

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  405: 'Method Not Allowed',
  407: 'Proxy Authentication Required',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

/** Answers a client with a proxy error (readable body, machine-readable reason) and closes. */
export function reply(client: Socket, status: number, reason: string, message: string, extra: readonly string[] = []): void {
  const body = `sandboxshift egress proxy: ${status} ${STATUS_TEXT[status] ?? ''}: ${message}\n`;
  const head = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Content-Type: text/plain; charset=utf-8',
    `X-SandboxShift-Egress: denied; reason=${reason}`,
    ...extra,
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    '',
    '',
  ].join('\r\n');
  if (client.destroyed) return;
  client.end(head + body, () => client.destroy());
}

/** 407 for refused proxy credentials, with the challenge clients answer with Basic credentials. */
export function replyProxyAuth(client: Socket, r: CredentialRefusal): void {
  reply(client, 407, r.reason, r.message, ['Proxy-Authenticate: Basic realm="sandboxshift-egress"']);
}

export function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timeout')), ms))),
  ]).finally(() => clearTimeout(timer));
}

/** A connected socket to exactly `a` (no name lookup), or null. */
export function connectTo(a: ResolvedAddress, port: number, timeoutMs: number): Promise<Socket | null> {
  return connectWithin({ host: a.address, port, family: a.family }, timeoutMs);
}

/** A connected socket to `host` (looked up by the system resolver), or null: for operator-given hosts. */
export function connectByName(host: string, port: number, timeoutMs: number): Promise<Socket | null> {
  return connectWithin({ host, port }, timeoutMs);
}

function connectWithin(target: { host: string; port: number; family?: number }, timeoutMs: number): Promise<Socket | null> {
  return new Promise((resolve) => {
    const sock = connect({ ...target, allowHalfOpen: true });
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(null);
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(null);
    });
  });
}
