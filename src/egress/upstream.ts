import { readFileSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { ParsedHead } from './request-head.js';
import { connectByName } from './sockets.js';

/**
 * An operator's upstream (corporate) HTTP proxy. After its own checks the egress proxy sends
 * `CONNECT host:port` by name to it (the upstream resolves the name) and plain-HTTP requests in
 * absolute-URI form; git intake reaches it through the proxy variables.
 */
export interface UpstreamProxy {
  host: string;
  port: number;
  /** `Basic …` for Proxy-Authorization, or null without credentials. */
  authorization: string | null;
  /** The proxy URL with its credentials, for git (its environment only, never its arguments). */
  urlWithCredentials: string;
}

export class UpstreamProxyError extends Error {
  constructor(message: string) {
    super(`egress.upstreamProxy: ${message}`);
    this.name = 'UpstreamProxyError';
  }
}

/** Largest credentials file read: one `user:password` line. */
const MAX_CREDENTIALS_BYTES = 4096;
/** Largest response head read from the upstream for a CONNECT. */
const MAX_RESPONSE_HEAD = 16 * 1024;

/** Reads the configuration once at start-up: the URL and the optional `user:password` file. */
export function loadUpstreamProxy(cfg: { url: string; credentialsFile: string | null }): UpstreamProxy {
  const u = new URL(cfg.url);
  if (u.protocol !== 'http:') throw new UpstreamProxyError(`url must be http://host:port (got ${u.protocol})`);
  if (u.username || u.password) throw new UpstreamProxyError('url must not carry credentials: put them in credentialsFile');
  const port = u.port ? Number(u.port) : 80;
  let user: string | null = null;
  let password = '';
  if (cfg.credentialsFile) {
    let text: string;
    try {
      if (statSync(cfg.credentialsFile).size > MAX_CREDENTIALS_BYTES) throw new UpstreamProxyError(`credentialsFile is above ${MAX_CREDENTIALS_BYTES} bytes`);
      text = readFileSync(cfg.credentialsFile, 'utf8').trim();
    } catch (err) {
      if (err instanceof UpstreamProxyError) throw err;
      throw new UpstreamProxyError(`credentialsFile cannot be read: ${(err as Error).message}`);
    }
    const colon = text.indexOf(':');
    if (colon <= 0 || /[\r\n]/.test(text)) throw new UpstreamProxyError('credentialsFile must hold one line user:password');
    user = text.slice(0, colon);
    password = text.slice(colon + 1);
  }
  const authorization = user === null ? null : `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const cred = user === null ? '' : `${encodeURIComponent(user)}:${encodeURIComponent(password)}@`;
  return { host: u.hostname, port, authorization, urlWithCredentials: `http://${cred}${u.host}` };
}

/** Connects to the upstream proxy itself (by its configured name), or null. */
export function connectUpstream(up: UpstreamProxy, timeoutMs: number): Promise<Socket | null> {
  return connectByName(up.host, up.port, timeoutMs);
}

/**
 * Opens a tunnel to host:port through the upstream: CONNECT by name, then waits for its answer.
 * Resolves with the tunnel socket (and any bytes that came after the response head), or with
 * the upstream's status when it refused.
 */
export async function upstreamTunnel(
  up: UpstreamProxy,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<{ socket: Socket; rest: Buffer } | { status: number | null }> {
  const sock = await connectUpstream(up, timeoutMs);
  if (!sock) return { status: null };
  const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const lines = [`CONNECT ${authority} HTTP/1.1`, `Host: ${authority}`];
  if (up.authorization) lines.push(`Proxy-Authorization: ${up.authorization}`);
  sock.write(`${lines.join('\r\n')}\r\n\r\n`);
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    const finish = (r: { socket: Socket; rest: Buffer } | { status: number | null }) => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('error', onError);
      sock.off('close', onError);
      if ('status' in r) sock.destroy();
      resolve(r);
    };
    const onError = () => finish({ status: null });
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_RESPONSE_HEAD) finish({ status: null });
        return;
      }
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(buf.subarray(0, end).toString('latin1'))?.[1] ?? NaN);
      if (status === 200) {
        sock.pause();
        finish({ socket: sock, rest: buf.subarray(end + 4) });
      } else finish({ status: Number.isNaN(status) ? null : status });
    };
    const timer = setTimeout(() => finish({ status: null }), timeoutMs);
    sock.on('data', onData);
    sock.once('error', onError);
    sock.once('close', onError);
  });
}

/** The head sent to the upstream for a plain-HTTP request: absolute-URI form, with its credentials. */
export function upstreamProxyHead(h: Extract<ParsedHead, { kind: 'forward' }>, up: UpstreamProxy, originHead: Buffer): Buffer {
  // originHead is the request as it would go to the origin (origin-form, Host, Connection: close).
  const text = originHead.toString('latin1');
  const firstEnd = text.indexOf('\r\n');
  const host = h.host.includes(':') ? `[${h.host}]` : h.host;
  const uri = `http://${host}${h.port === 80 ? '' : `:${h.port}`}${h.path}`;
  const auth = up.authorization ? `\r\nProxy-Authorization: ${up.authorization}` : '';
  return Buffer.from(`${h.method} ${uri} HTTP/1.1${auth}${text.slice(firstEnd)}`, 'latin1');
}
