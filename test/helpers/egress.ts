import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Test servers for egress tests: the test owns them, on loopback (or 0.0.0.0 where stated). */
export interface Upstream {
  port: number;
  /** Requests seen: "METHOD path host=<Host header>". */
  seen: string[];
  /** Sockets currently open to this server. */
  open: Set<net.Socket>;
  close(): Promise<void>;
}

function track(server: net.Server, open: Set<net.Socket>): void {
  server.on('connection', (s: net.Socket) => {
    open.add(s);
    s.once('close', () => open.delete(s));
  });
}

async function listen(server: net.Server, hosts: string[], port = 0): Promise<number> {
  // The first host picks the port; the others (e.g. 127.0.0.2) share it through extra listeners.
  await new Promise<void>((r) => server.listen(port, hosts[0], r));
  return (server.address() as AddressInfo).port;
}

/** A plain HTTP server answering `hello <path>` on each of `hosts` (same port). */
export async function httpUpstream(hosts = ['127.0.0.1']): Promise<Upstream> {
  const seen: string[] = [];
  const open = new Set<net.Socket>();
  const handler: http.RequestListener = (req, res) => {
    seen.push(`${req.method} ${req.url} host=${req.headers.host} connection=${req.headers.connection}`);
    if (req.url === '/slow') return; // never answers: a long-lived tunnel
    res.end(`hello ${req.url}\n`);
  };
  const servers = hosts.map(() => http.createServer(handler));
  servers.forEach((s) => track(s, open));
  const port = await listen(servers[0]!, [hosts[0]!]);
  for (const [i, s] of servers.entries()) if (i > 0) await listen(s, [hosts[i]!], port);
  return {
    port,
    seen,
    open,
    close: async () => {
      for (const s of open) s.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}

/** A TLS server with a fresh self-signed certificate for `names`; `ca` is its PEM. */
export async function httpsUpstream(names: string[]): Promise<Upstream & { ca: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-tls-'));
  try {
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', `/CN=${names[0]}`,
      '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`,
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    const key = readFileSync(join(dir, 'key.pem'));
    const cert = readFileSync(join(dir, 'cert.pem'));
    const seen: string[] = [];
    const open = new Set<net.Socket>();
    const server = https.createServer({ key, cert }, (req, res) => {
      seen.push(`${req.method} ${req.url} host=${req.headers.host}`);
      res.end(`secure hello ${req.url}\n`);
    });
    track(server, open);
    const port = await listen(server, ['127.0.0.1']);
    return {
      port,
      seen,
      open,
      ca: cert.toString(),
      close: async () => {
        for (const s of open) s.destroy();
        await new Promise((r) => server.close(r));
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A TCP echo server (what a tunnel is tested with). */
export async function echoUpstream(hosts = ['127.0.0.1']): Promise<Upstream> {
  const open = new Set<net.Socket>();
  const servers = hosts.map(() => net.createServer((s) => s.pipe(s)));
  servers.forEach((s) => track(s, open));
  const port = await listen(servers[0]!, [hosts[0]!]);
  for (const [i, s] of servers.entries()) if (i > 0) await listen(s, [hosts[i]!], port);
  return {
    port,
    seen: [],
    open,
    close: async () => {
      for (const s of open) s.destroy();
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    },
  };
}

/** Sends `data` on a Unix socket and collects everything until the other side closes. */
export function exchange(socketPath: string, data: string | Buffer, opts: { endAfterWrite?: boolean; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no close within ${opts.timeoutMs ?? 10_000} ms; got ${Buffer.concat(chunks).toString()}`));
    }, opts.timeoutMs ?? 10_000);
    s.on('data', (c) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    s.write(data);
    if (opts.endAfterWrite) s.end();
  });
}

/** Opens a CONNECT tunnel over the Unix socket; resolves with the socket once the 200 arrived. */
export function tunnel(socketPath: string, target: string): Promise<{ sock: net.Socket; head: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let buf = '';
    s.on('error', reject);
    const onData = (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      const head = buf.slice(0, end);
      if (!head.startsWith('HTTP/1.1 200')) {
        s.destroy();
        return reject(new Error(`CONNECT refused: ${buf}`));
      }
      resolve({ sock: s, head });
    };
    s.on('data', onData);
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  });
}

/** Writes `text` into a tunnel and waits until the echo returned it. */
export function echoThrough(sock: net.Socket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const timer = setTimeout(() => reject(new Error(`echo timed out, got ${JSON.stringify(got)}`)), 10_000);
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.length >= text.length) {
        clearTimeout(timer);
        sock.off('data', onData);
        resolve(got);
      }
    };
    sock.on('data', onData);
    sock.write(text);
  });
}

export const closed = (s: net.Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
