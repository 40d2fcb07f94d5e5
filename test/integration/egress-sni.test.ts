/**
 * The egress proxy's checks of what follows the request head: after CONNECT the client's TLS
 * ClientHello must name the CONNECT host (SNI), and on port 443 it must be there at all; an
 * absolute-URI request's Host must name the URI's host. Real TLS servers the test starts (one on
 * port 443 of a loopback address of its own), real node:tls clients through the tunnel, a real
 * SQLite store; then the same from inside a real task.
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { pino } from 'pino';
import t from 'tap';
import { buildRangeList, createResolver } from '../../src/egress/addresses.js';
import { EgressProxy, type ProxySettings } from '../../src/egress/proxy.js';
import { loadUpstreamProxy } from '../../src/egress/upstream.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { api, runTask } from '../helpers/client.js';
import { echoThrough, echoUpstream, exchange, httpsUpstream, httpUpstream, proxySettings, tunnel } from '../helpers/egress.js';
import { sleep } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';
import { testUpstreamProxy } from '../helpers/upstream-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-sni-'));
const store = new SqliteStore(join(dir, 'db.sqlite'));

/** Port 443 on loopback addresses of this test's own (127.77.x.y), so the 443-only rule is real. */
async function on443<T>(start: (host: string) => Promise<T>): Promise<{ host: string; server: T }> {
  for (let i = 0; ; i++) {
    const host = `127.77.${randomInt(1, 255)}.${randomInt(1, 255)}`;
    try {
      return { host, server: await start(host) };
    } catch (err) {
      if (i >= 10 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    }
  }
}
const secure443 = await on443((host) => httpsUpstream(['secure.test', 'other.test'], { host, port: 443 }));
const plain443 = await on443(async (host) => {
  const open = new Set<net.Socket>();
  const server = net.createServer((s) => {
    open.add(s);
    s.once('close', () => open.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(443, host, () => resolve()));
  return { open, close: () => new Promise<void>((r) => (open.forEach((s) => s.destroy()), server.close(() => r()))) };
});
const secure = await httpsUpstream(['secure.test', 'other.test']); // a TLS server on a port other than 443
const echo = await echoUpstream(['127.0.0.1']);
const web = await httpUpstream(['127.0.0.1']);
t.teardown(async () => {
  await Promise.all([secure443.server.close(), plain443.server.close(), secure.close(), echo.close(), web.close()]);
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const hosts = {
  'secure.test': [secure443.host],
  'plain.test': [plain443.host],
  'tls.test': ['127.0.0.1'],
  'ok.test': ['127.0.0.1'],
};
const settings = proxySettings([443, secure.port, echo.port, web.port]);
const ranges = ['127.0.0.1/32', `${secure443.host}/32`, `${plain443.host}/32`];
let n = 0;
const taskId = () => `tsk_sni${String(n++).padStart(13, '0')}`;
function proxy(over: Partial<ProxySettings> = {}, upstream: ReturnType<typeof loadUpstreamProxy> | null = null) {
  const p = new EgressProxy(join(dir, `p${n++}`), { ...settings, ...over }, createResolver(hosts), buildRangeList(ranges), store, pino({ level: 'silent' }), undefined, upstream);
  p.prepare();
  return p;
}
const decisions = (id: string) => store.egressDecisions(id).decisions.map((d) => [d.host, d.port, d.allowed, d.reason]);

/** Writes each chunk in pieces of `piece` bytes with a pause between them (a ClientHello split across writes). */
class Trickle extends Duplex {
  constructor(private readonly sock: net.Socket, private readonly piece: number) {
    super();
    sock.on('data', (c: Buffer) => this.push(c));
    sock.on('end', () => this.push(null));
    sock.on('close', () => this.destroy());
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    void (async () => {
      for (let i = 0; i < chunk.length; i += this.piece) {
        this.sock.write(chunk.subarray(i, i + this.piece));
        await sleep(15);
      }
      cb();
    })();
  }
}

/**
 * A TLS client over a CONNECT tunnel: `GET path` and the answer body, or the error code the
 * client saw (the proxy's refusal is a fatal access_denied alert).
 */
async function httpsThrough(socketPath: string, target: string, servername: string, path: string, opts: { ca?: string; piece?: number } = {}): Promise<string> {
  const { sock } = await tunnel(socketPath, target);
  const transport = opts.piece ? new Trickle(sock, opts.piece) : sock;
  return new Promise((resolve) => {
    const s = tls.connect({ socket: transport as net.Socket, servername, ...(opts.ca ? { ca: opts.ca } : { rejectUnauthorized: false }) });
    let body = '';
    const timer = setTimeout(() => (s.destroy(), resolve(`no answer; got ${JSON.stringify(body)}`)), 15_000);
    s.on('secureConnect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: ${servername}\r\nConnection: close\r\n\r\n`));
    s.on('data', (c: Buffer) => (body += c.toString()));
    s.on('error', (err: NodeJS.ErrnoException) => (clearTimeout(timer), sock.destroy(), resolve(`error ${err.code ?? err.message}`)));
    s.on('end', () => (clearTimeout(timer), sock.destroy(), resolve(body.split('\r\n\r\n')[1] ?? body)));
  });
}

t.test('on 443: a matching SNI round-trips; a mismatching or missing one is refused with an alert and recorded', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['secure.test', 'plain.test']);
  const through = (servername: string, path: string, opts?: { ca?: string; piece?: number }) => httpsThrough(e.socketPath, 'secure.test:443', servername, path, opts);
  t.equal(await through('secure.test', '/match', { ca: secure443.server.ca }), 'secure hello /match\n', 'verified TLS to the CONNECT host');
  t.equal(await through('other.test', '/fronted'), 'error ERR_SSL_TLSV1_ALERT_ACCESS_DENIED', 'another name: refused (domain fronting)');
  t.equal(await through('', '/nosni'), 'error ERR_SSL_TLSV1_ALERT_ACCESS_DENIED', 'no SNI at all: refused');
  t.equal(await through('SECURE.test.', '/case', { ca: secure443.server.ca }), 'secure hello /case\n', 'case and a trailing dot do not matter');
  t.equal(await through('secure.test', '/split', { ca: secure443.server.ca, piece: 7 }), 'secure hello /split\n', 'a ClientHello split across many writes');
  t.same(secure443.server.seen, ['GET /match host=secure.test', 'GET /case host=SECURE.test.', 'GET /split host=secure.test'], 'refused hellos never reached the server');

  // Not TLS on 443: refused before a byte reaches the destination (an echo server there; the
  // same bytes through a tunnel to a non-443 port pass, in the next test but one).
  const plain = await tunnel(e.socketPath, 'plain.test:443');
  const got = await new Promise<string>((resolve) => {
    let b = '';
    plain.sock.on('data', (c: Buffer) => (b += c.toString()));
    plain.sock.on('close', () => resolve(b));
    plain.sock.write('GET / HTTP/1.1\r\nHost: plain.test\r\n\r\n');
  });
  t.equal(got, '', 'nothing came back: the echo server never saw the request');
  await sleep(150);
  t.same(decisions(id), [
    ['secure.test', 443, true, 'allowlisted'],
    ['secure.test', 443, false, 'sni_mismatch'],
    ['secure.test', 443, false, 'sni_missing'],
    ['secure.test', 443, true, 'allowlisted'],
    ['secure.test', 443, true, 'allowlisted'],
    ['plain.test', 443, false, 'sni_missing'],
  ]);
  e.close();
});

t.test('on 443 a client silent until the wait ends is sni_missing', async (t) => {
  const id = taskId();
  const e = await proxy({ idleTimeoutSeconds: 1 }).open(id, ['plain.test']);
  const { sock } = await tunnel(e.socketPath, 'plain.test:443');
  await new Promise<void>((r) => sock.once('close', () => r()));
  t.same(decisions(id), [['plain.test', 443, false, 'sni_missing']]);
  e.close();
});

t.test('on other ports: a ClientHello with an SNI must match, a partial one complete; no SNI, plain protocols and servers that speak first pass', async (t) => {
  const id = taskId();
  const e = await proxy({ idleTimeoutSeconds: 2 }).open(id, ['tls.test', 'ok.test']);
  const target = `tls.test:${secure.port}`;
  t.equal(await httpsThrough(e.socketPath, target, 'tls.test', '/a'), 'secure hello /a\n');
  t.equal(await httpsThrough(e.socketPath, target, 'other.test', '/b'), 'error ERR_SSL_TLSV1_ALERT_ACCESS_DENIED', 'a mismatch is refused on any port');
  t.equal(await httpsThrough(e.socketPath, target, '', '/c'), 'secure hello /c\n', 'no SNI passes off 443');
  const plain = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  t.equal(await echoThrough(plain.sock, 'not tls at all'), 'not tls at all', 'a plain protocol passes');
  plain.sock.destroy();
  // The start of a ClientHello, then EOF: its SNI can never be judged, so it is not forwarded.
  const cut = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  const back = await new Promise<string>((resolve) => {
    let b = '';
    cut.sock.on('data', (c: Buffer) => (b += c.toString('latin1')));
    cut.sock.on('close', () => resolve(b));
    cut.sock.end(Buffer.from([22, 3, 1, 0, 200, 1, 0, 0, 196, 3, 3]));
  });
  t.equal(back, Buffer.from([21, 3, 3, 0, 2, 2, 49]).toString('latin1'), 'a ClientHello cut short: only the access_denied alert came back, no echo');
  // A server that speaks first: the client waits for it, the proxy's wait ends, the banner arrives.
  const banner = net.createServer((s) => s.end('220 banner\r\n'));
  await new Promise<void>((r) => banner.listen(0, '127.0.0.1', () => r()));
  const port = (banner.address() as net.AddressInfo).port;
  const e2 = await proxy({ idleTimeoutSeconds: 2, ports: [port] }).open(taskId(), ['ok.test']);
  const b = await tunnel(e2.socketPath, `ok.test:${port}`);
  const heard = await new Promise<string>((r) => b.sock.once('data', (c: Buffer) => r(c.toString())));
  t.equal(heard, '220 banner\r\n');
  b.sock.destroy();
  e2.close();
  banner.close();
  await sleep(150);
  t.same(decisions(id), [
    ['tls.test', secure.port, true, 'allowlisted'],
    ['tls.test', secure.port, false, 'sni_mismatch'],
    ['tls.test', secure.port, true, 'allowlisted'],
    ['ok.test', echo.port, true, 'allowlisted'],
    ['ok.test', echo.port, false, 'sni_missing'],
  ]);
  e.close();
});

t.test('absolute-URI HTTP: a Host naming another host or port, or two Host fields, is host_mismatch', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test']);
  const get = (host: string[]) => exchange(e.socketPath, `GET http://ok.test:${web.port}/h HTTP/1.1\r\n${host.map((h) => `Host: ${h}\r\n`).join('')}\r\n`);
  t.match(await get(['ok.test']), /^HTTP\/1\.1 200 [\s\S]*hello \/h/, 'Host without a port matches');
  t.match(await get([`OK.test:${web.port}`]), /^HTTP\/1\.1 200 /, 'Host with the same port matches');
  t.match(await get([]), /^HTTP\/1\.1 200 /, 'no Host: the URI decides');
  for (const h of [['other.test'], [`ok.test:${web.port + 1}`], ['ok.test', 'other.test'], ['ok.test', 'ok.test'], ['127.0.0.1']]) {
    t.match(await get(h), /^HTTP\/1\.1 403 [\s\S]*reason=host_mismatch/, JSON.stringify(h));
  }
  t.equal(web.seen.length, 3, 'refused requests never reached the server');
  t.same(decisions(id).map((d) => d[3]), ['allowlisted', 'allowlisted', 'allowlisted', ...Array(5).fill('host_mismatch')]);
  e.close();
});

t.test('through the upstream proxy the same check applies after CONNECT', async (t) => {
  const corp = await testUpstreamProxy({ 'tls.test': '127.0.0.1' });
  t.teardown(() => corp.close());
  const id = taskId();
  const e = await proxy({}, loadUpstreamProxy({ url: `http://127.0.0.1:${corp.port}`, credentialsFile: null })).open(id, ['tls.test']);
  const target = `tls.test:${secure.port}`;
  t.equal(await httpsThrough(e.socketPath, target, 'tls.test', '/up'), 'secure hello /up\n');
  t.equal(await httpsThrough(e.socketPath, target, 'other.test', '/up2'), 'error ERR_SSL_TLSV1_ALERT_ACCESS_DENIED');
  await sleep(150);
  t.same(decisions(id).map((d) => d[3]), ['allowlisted', 'sni_mismatch']);
  t.same(corp.seen.slice(0, 2), [`CONNECT ${target} auth=none`, `CONNECT ${target} auth=none`], 'both went to the upstream by name');
  t.notOk(secure.seen.includes('GET /up2 host=other.test'));
  e.close();
});

t.test('from a task: a mismatching SNI is refused and reads sni_mismatch; the allowed name works', async (t) => {
  const srv = await startTestServer({
    egress: { testHosts: { 'secure.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [secure.port], ceiling: ['secure.test'] },
  });
  t.teardown(() => srv.close());
  const py = String.raw`
import os, socket, ssl, sys
host, port = os.environ["https_proxy"].rsplit("/", 1)[-1].rsplit(":", 1)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for name in sys.argv[1:]:
    s = socket.create_connection((host, int(port)), timeout=20)
    s.sendall(("CONNECT secure.test:%d HTTP/1.1\r\nHost: secure.test\r\n\r\n" % PORT).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    try:
        t = ctx.wrap_socket(s, server_hostname=name)
        t.sendall(b"GET /task HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
        print(name, t.recv(4096).decode().split("\r\n")[0])
    except ssl.SSLError as e:
        print(name, "refused", e.reason)
`.replace('PORT', String(secure.port));
  const r = await runTask(srv.url, 'python3 sni.py other.test secure.test', { workspace: { files: { 'sni.py': py } }, network: { allow: ['secure.test'] } });
  t.equal(r.task.status, 'succeeded', r.stderr);
  t.equal(r.stdout, 'other.test refused TLSV1_ALERT_ACCESS_DENIED\nsecure.test HTTP/1.1 200 OK\n');
  const egress = (await api(srv.url, 'GET', `/v1/tasks/${r.id}/egress`)).json;
  t.same(
    egress.decisions.map((d: any) => [d.host, d.port, d.allowed, d.reason]),
    [
      ['secure.test', secure.port, false, 'sni_mismatch'],
      ['secure.test', secure.port, true, 'allowlisted'],
    ],
  );
});
