import http from 'node:http';
import net, { type AddressInfo } from 'node:net';

/**
 * A corporate-style HTTP proxy for tests, on loopback: it answers CONNECT and absolute-URI
 * requests, resolving names itself from `hosts` (test names only, all on loopback), and records
 * what reached it. With `credentials` it wants `Proxy-Authorization: Basic …` and answers 407
 * otherwise.
 */
export interface TestUpstreamProxy {
  port: number;
  /** "CONNECT host:port auth=<ok|missing|bad>" or "GET http://… auth=…". */
  seen: string[];
  close(): Promise<void>;
}

export async function testUpstreamProxy(hosts: Record<string, string>, credentials: string | null = null): Promise<TestUpstreamProxy> {
  const seen: string[] = [];
  const open = new Set<net.Socket>();
  const auth = (h: string | undefined) =>
    credentials === null ? 'none' : h === `Basic ${Buffer.from(credentials).toString('base64')}` ? 'ok' : h === undefined ? 'missing' : 'bad';
  const target = (host: string) => hosts[host] ?? null;
  const server = http.createServer((req, res) => {
    const a = auth(req.headers['proxy-authorization']);
    seen.push(`${req.method} ${req.url} auth=${a}`);
    if (credentials !== null && a !== 'ok') {
      res.writeHead(407, { 'proxy-authenticate': 'Basic realm="test"' });
      return res.end();
    }
    const u = new URL(req.url ?? '/');
    const address = target(u.hostname);
    if (!address) {
      res.writeHead(502);
      return res.end('unknown host\n');
    }
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    const up = http.request({ host: address, port: Number(u.port || 80), method: req.method, path: `${u.pathname}${u.search}`, headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const a = auth(req.headers['proxy-authorization']);
    seen.push(`CONNECT ${req.url} auth=${a}`);
    client.on('error', () => undefined);
    if (credentials !== null && a !== 'ok') return void client.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n');
    const [host, port] = (req.url ?? '').split(/:(?=\d+$)/);
    const address = target(host ?? '');
    if (!address) return void client.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n');
    const up = net.connect(Number(port), address, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    up.on('error', () => client.destroy());
  });
  server.on('connection', (s: net.Socket) => {
    open.add(s);
    s.once('close', () => open.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    seen,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
