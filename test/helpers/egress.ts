import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ProxySettings } from '../../src/egress/proxy.js';

/** The proxy settings egress tests use: the defaults of a server, with the ports a test serves. */
export function proxySettings(ports: number[]): ProxySettings {
  return {
    ports,
    maxConnectionsPerTask: 16,
    idleTimeoutSeconds: 30,
    headerTimeoutSeconds: 10,
    connectTimeoutSeconds: 5,
    maxHeaderBytes: 4096,
    maxDecisionsPerTask: 1000,
  };
}

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
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, hosts[0], () => {
      server.off('error', reject);
      resolve();
    });
  });
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

/**
 * A TLS server with a fresh self-signed certificate for `names`; `ca` is its PEM. It listens on
 * 127.0.0.1 and a free port unless `at` names another loopback address and port.
 */
export async function httpsUpstream(names: string[], at: { host: string; port: number } = { host: '127.0.0.1', port: 0 }): Promise<Upstream & { ca: string }> {
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
    const port = await listen(server, [at.host], at.port);
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

/** Where a test client connects: a Unix socket path, or a TCP host and port. */
export type ProxyEndpoint = string | { host: string; port: number };
const connectTo = (to: ProxyEndpoint) => (typeof to === 'string' ? net.connect(to) : net.connect(to.port, to.host));

/** Sends `data` on a Unix socket (or TCP) and collects everything until the other side closes. */
export function exchange(socketPath: ProxyEndpoint, data: string | Buffer, opts: { endAfterWrite?: boolean; timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connectTo(socketPath);
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

/**
 * Opens a CONNECT tunnel over the Unix socket (or TCP, with `extra` head lines such as
 * Proxy-Authorization); resolves with the socket once the 200 arrived.
 */
export function tunnel(socketPath: ProxyEndpoint, target: string, extra: readonly string[] = []): Promise<{ sock: net.Socket; head: string }> {
  return new Promise((resolve, reject) => {
    const s = connectTo(socketPath);
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
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${extra.map((l) => `${l}\r\n`).join('')}\r\n`);
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

/**
 * probe.py, put into task workspaces and control containers: one network attempt per call,
 * one line of output saying what happened. `python3 probe.py KIND ARGS...`.
 */
export const PROBE_PY = String.raw`
import errno, os, socket, ssl, struct, sys, urllib.error, urllib.request

def err(e):
    code = getattr(e, "errno", None)
    return "error " + (errno.errorcode.get(code, str(code)) if code else type(e).__name__)

def main(kind, *a):
    if kind == "http":  # urllib with whatever proxy variables the environment has
        ctx = ssl.create_default_context(cafile=a[1]) if len(a) > 1 else None
        try:
            with urllib.request.urlopen(a[0], timeout=20, context=ctx) as r:
                return "ok %d %s" % (r.status, r.read().decode().strip())
        except urllib.error.HTTPError as e:
            return "http %d %s %s" % (e.code, e.headers.get("X-SandboxShift-Egress"), e.read().decode().strip())
        except Exception as e:
            return err(getattr(e, "reason", e)) if isinstance(getattr(e, "reason", None), OSError) else err(e)
    if kind == "connect":  # a raw CONNECT through the relay
        s = socket.create_connection(("127.0.0.1", int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])), timeout=20)
        s.sendall(("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (a[0], a[0])).encode())
        head = s.recv(4096).decode("latin1").split("\r\n")
        line = head[0]
        if line.startswith("HTTP/1.1 200"):
            s.sendall(b"echo-me")
            return line + " | " + s.recv(100).decode()
        return line + " | " + [h for h in head if h.startswith("X-SandboxShift")][0]
    if kind in ("tcp", "tcp6"):
        fam = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect((a[0], int(a[1])))
            s.sendall(b"hi")
            return "connected " + s.recv(100).decode()
        except Exception as e:
            return err(e)
    if kind in ("udp", "udp6", "dnsq"):
        fam = socket.AF_INET6 if kind == "udp6" else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(3)
        payload = b"hi"
        if kind == "dnsq":  # a DNS query for ok.test, type A
            payload = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x02ok\x04test\x00" + struct.pack(">HH", 1, 1)
        try:
            s.sendto(payload, (a[0], int(a[1])))
            data, _ = s.recvfrom(512)
            return "reply %d bytes" % len(data)
        except Exception as e:
            return err(e)
    if kind == "resolve":
        try:
            return "resolved " + socket.getaddrinfo(a[0], 80)[0][4][0]
        except Exception as e:
            return "error " + type(e).__name__
    if kind == "listen":  # serve on 0.0.0.0:PORT and on an abstract unix socket until killed
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(a[0]))); s.listen(5)
        u = socket.socket(socket.AF_UNIX); u.bind("\0" + a[1]); u.listen(5)
        print("listening", flush=True)
        while True:
            c, _ = s.accept(); c.sendall(b"from-listener"); c.close()
    if kind == "unix-abstract":
        u = socket.socket(socket.AF_UNIX)
        try:
            u.connect("\0" + a[0]); return "connected"
        except Exception as e:
            return err(e)
    return "unknown probe"

print(main(*sys.argv[1:]), flush=True)
`;

/**
 * A tiny PEP 503 package index serving one pure-Python wheel (sbxdemo 1.0, VALUE =
 * "from-test-index"), built here with the host's python3 `zipfile`.
 */
export async function packageIndex(): Promise<Upstream> {
  const { createHash } = await import('node:crypto');
  const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-index-'));
  const wheelName = 'sbxdemo-1.0-py3-none-any.whl';
  const build = String.raw`
import base64, hashlib, sys, zipfile
files = {
    "sbxdemo/__init__.py": b'VALUE = "from-test-index"\n',
    "sbxdemo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: sbxdemo\nVersion: 1.0\n",
    "sbxdemo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: sandboxshift-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = ""
for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record += "%s,sha256=%s,%d\n" % (name, digest, len(data))
record += "sbxdemo-1.0.dist-info/RECORD,,\n"
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, data in files.items():
        z.writestr(name, data)
    z.writestr("sbxdemo-1.0.dist-info/RECORD", record)
`;
  try {
    execFileSync('python3', ['-c', build, join(dir, wheelName)]);
    const wheel = readFileSync(join(dir, wheelName));
    const sha = createHash('sha256').update(wheel).digest('hex');
    const seen: string[] = [];
    const open = new Set<net.Socket>();
    const server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (req.url === '/simple/sbxdemo/') {
        res.setHeader('content-type', 'text/html');
        return res.end(`<!DOCTYPE html><html><body><a href="/files/${wheelName}#sha256=${sha}">${wheelName}</a></body></html>`);
      }
      if (req.url === `/files/${wheelName}`) return res.end(wheel);
      res.statusCode = 404;
      res.end('not found');
    });
    track(server, open);
    const port = await listen(server, ['127.0.0.1']);
    return { port, seen, open, close: () => new Promise((r) => server.close(() => r())) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
