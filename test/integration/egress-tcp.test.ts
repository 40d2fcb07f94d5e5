/**
 * The egress proxy's TCP listener with per-task credentials: a real EgressProxy on a loopback
 * port, real clients (curl through its proxy option, raw sockets for what curl cannot send), the
 * test's own loopback upstreams and a real SQLite store for the decisions.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import t from 'tap';
import { buildRangeList, createResolver } from '../../src/egress/addresses.js';
import { EgressProxy, type ProxySettings } from '../../src/egress/proxy.js';
import { REFUSALS } from '../../src/egress/tcp.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { closed, echoThrough, echoUpstream, exchange, httpsUpstream, httpUpstream, proxySettings, tunnel } from '../helpers/egress.js';
import { sleep } from '../helpers/host.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-tcp-'));
const store = new SqliteStore(join(dir, 'db.sqlite'));
const web = await httpUpstream(['127.0.0.1']);
const echo = await echoUpstream(['127.0.0.1']);
const tls = await httpsUpstream(['ok.test']);
const caFile = join(dir, 'ca.pem');
writeFileSync(caFile, tls.ca);
const proxies: EgressProxy[] = [];
t.teardown(async () => {
  for (const p of proxies) await p.closeTcp();
  await web.close();
  await echo.close();
  await tls.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const hosts = { 'ok.test': ['127.0.0.1'], 'evil.test': ['127.0.0.1'] };
const base = proxySettings([web.port, echo.port, tls.port]);
let n = 0;
async function proxy(over: Partial<ProxySettings> = {}, keyFile = join(dir, 'egress-tcp.key'), maxPendingConnections = 64) {
  const p = new EgressProxy(join(dir, `p${n++}`), { ...base, ...over }, createResolver(hosts), buildRangeList(['127.0.0.1/32']), store, pino({ level: 'silent' }));
  p.prepare();
  proxies.push(p);
  const address = await p.startTcp({ host: '127.0.0.1', port: 0, advertiseUrl: null, keyFile, maxPendingConnections });
  return { p, address, at: { host: '127.0.0.1', port: address.port } };
}
const taskId = (stem = 'Tcp') => `tsk_${stem}${String(n++).padStart(10, '0')}`;
const decisions = (id: string) => store.egressDecisions(id).decisions;
const basicOf = (proxyUrl: string) => {
  const u = new URL(proxyUrl);
  return `Proxy-Authorization: Basic ${Buffer.from(`${u.username}:${u.password}`).toString('base64')}`;
};

/** curl through `proxyUrl`: body, HTTP status and the CONNECT status (0 when no CONNECT). */
async function curl(proxyUrl: string, url: string, extra: string[] = []): Promise<{ body: string; code: number; connect: number; exit: number }> {
  const args = ['-sS', '--max-time', '20', '--noproxy', '', '-x', proxyUrl, '-w', '\n%{http_code} %{http_connect}', ...extra, url];
  const r = await run('curl', args, { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } }).then(
    (o) => ({ ...o, exit: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => ({ stdout: e.stdout, stderr: e.stderr, exit: e.code }),
  );
  const lines = r.stdout.split('\n');
  const [code, connect] = lines.pop()!.split(' ').map(Number) as [number, number];
  return { body: lines.join('\n'), code, connect, exit: r.exit };
}

t.test('a task reaches its allowed host through the TCP listener with the credentials in its proxy URL', async (t) => {
  const { p, address } = await proxy();
  const id = taskId();
  const e = await p.openTcp(id, ['ok.test']);
  t.equal(e.proxyUrl, `http://${id.toLowerCase()}:${new URL(e.proxyUrl!).password}@127.0.0.1:${address.port}`);
  t.match(new URL(e.proxyUrl!).password, /^[0-9a-f]{64}$/);

  const plain = await curl(e.proxyUrl!, `http://ok.test:${web.port}/plain`);
  t.equal(plain.code, 200);
  t.equal(plain.body, 'hello /plain\n');
  t.notMatch(web.seen.at(-1), /authorization/i, 'the credentials are not passed upstream');
  const secure = await curl(e.proxyUrl!, `https://ok.test:${tls.port}/secure`, ['--cacert', caFile]);
  t.same([secure.connect, secure.code, secure.body], [200, 200, 'secure hello /secure\n'], 'CONNECT with TLS and its SNI');

  const refused = await curl(e.proxyUrl!, `http://evil.test:${web.port}/x`);
  t.equal(refused.code, 403);
  t.match(refused.body, /sandboxshift egress proxy: 403 Forbidden: evil\.test:\d+: not_allowlisted/);
  const refusedTunnel = await curl(e.proxyUrl!, `https://evil.test:${tls.port}/`, ['--cacert', caFile]);
  t.equal(refusedTunnel.connect, 403, 'a CONNECT to a host outside the list');
  await sleep(100);
  t.match(decisions(id), [
    { host: 'ok.test', port: web.port, allowed: true, reason: 'allowlisted', address: '127.0.0.1' },
    { host: 'ok.test', port: tls.port, allowed: true, reason: 'allowlisted' },
    { host: 'evil.test', allowed: false, reason: 'not_allowlisted' },
    { host: 'evil.test', allowed: false, reason: 'not_allowlisted' },
  ]);
  t.equal(decisions(id).length, 4);
  t.ok(decisions(id)[0]!.bytesDown > 0, 'byte counts recorded');
  e.close();
});

t.test('missing, malformed and wrong credentials get 407 with a stable reason and text; nothing is recorded or reached', async (t) => {
  const { p, address, at } = await proxy();
  const id = taskId();
  const e = await p.openTcp(id, ['ok.test']);
  const other = await p.openTcp(taskId(), ['evil.test']);
  const seen = web.seen.length;
  const ask = (extra: string) => exchange(at, `GET http://ok.test:${web.port}/x HTTP/1.1\r\nHost: ok.test:${web.port}\r\n${extra}\r\n`);

  const missing = await ask('');
  t.match(missing, /^HTTP\/1\.1 407 Proxy Authentication Required\r\n/);
  t.match(missing, /\r\nProxy-Authenticate: Basic realm="sandboxshift-egress"\r\n/);
  t.match(missing, /X-SandboxShift-Egress: denied; reason=proxy_auth_missing/);
  t.ok(missing.endsWith(`sandboxshift egress proxy: 407 Proxy Authentication Required: ${REFUSALS.proxy_auth_missing}\n`), missing);
  t.match(await ask('Proxy-Authorization: Bearer abc\r\n'), /reason=proxy_auth_malformed[\s\S]*Basic <base64 of user:token>/);

  const token = new URL(e.proxyUrl!).password;
  const wrong = await curl(`http://${id.toLowerCase()}:${'0'.repeat(64)}@127.0.0.1:${address.port}`, `http://ok.test:${web.port}/x`);
  t.equal(wrong.code, 407, 'curl: a wrong token');
  t.ok(wrong.body.endsWith(`: ${REFUSALS.proxy_auth_refused}\n`), wrong.body);
  const swapped = await curl(`http://${new URL(other.proxyUrl!).username}:${token}@127.0.0.1:${address.port}`, `http://ok.test:${web.port}/x`);
  t.equal(swapped.code, 407, "another task's user with this task's token");
  const tunnelled = await curl(`http://${id.toLowerCase()}:${token.slice(0, 63)}${token.endsWith('0') ? '1' : '0'}@127.0.0.1:${address.port}`, `https://ok.test:${tls.port}/`, ['--cacert', caFile]);
  t.equal(tunnelled.connect, 407, 'a CONNECT with a wrong token');
  // Positive control: the same request with the right credentials passes.
  t.equal((await curl(e.proxyUrl!, `http://ok.test:${web.port}/x`)).code, 200);
  await sleep(50);
  t.equal(web.seen.length, seen + 1, 'only the authenticated request reached the upstream');
  t.equal(decisions(id).length, 1, 'refused credentials record no decision');
  e.close();
  other.close();
});

t.test('close() revokes: open tunnels end and the same credentials then get 407', async (t) => {
  const { p, at } = await proxy();
  const id = taskId();
  const e = await p.openTcp(id, ['ok.test']);
  const { sock } = await tunnel(at, `ok.test:${echo.port}`, [basicOf(e.proxyUrl!)]);
  t.equal(await echoThrough(sock, 'before close'), 'before close');
  t.equal(e.connections, 1);
  e.close();
  await closed(sock);
  t.pass('the open tunnel ended with the task');
  const after = await curl(e.proxyUrl!, `http://ok.test:${web.port}/late`);
  t.equal(after.code, 407);
  t.match(after.body, /proxy_auth_refused|not those of a running task/);
  await sleep(50);
  t.match(decisions(id), [{ host: 'ok.test', allowed: true, bytesUp: 12, bytesDown: 12 }]);
  t.equal(decisions(id).length, 1);
});

t.test('a restarted server with the same key accepts the credentials of a task it opens again; another key does not', async (t) => {
  const keyFile = join(dir, 'restart.key');
  const first = await proxy({}, keyFile);
  const id = taskId();
  const before = await first.p.openTcp(id, ['ok.test']);
  await first.p.closeTcp();
  const second = await proxy({}, keyFile);
  const again = await second.p.openTcp(id, ['ok.test']);
  const port = (u: string) => new URL(u).port;
  t.equal(again.proxyUrl!.replace(`:${port(again.proxyUrl!)}`, ''), before.proxyUrl!.replace(`:${port(before.proxyUrl!)}`, ''), 'the same user and token');
  const moved = before.proxyUrl!.replace(`:${port(before.proxyUrl!)}`, `:${second.address.port}`);
  t.equal((await curl(moved, `http://ok.test:${web.port}/again`)).code, 200, "the old pod's URL works on the new server");
  t.equal((await curl(second.address.advertiseUrl.replace('http://', `http://${id.toLowerCase()}:${'f'.repeat(64)}@`), `http://ok.test:${web.port}/`)).code, 407);
  const third = await proxy({}, join(dir, 'another.key'));
  await third.p.openTcp(id, ['ok.test']);
  const elsewhere = before.proxyUrl!.replace(`:${port(before.proxyUrl!)}`, `:${third.address.port}`);
  t.equal((await curl(elsewhere, `http://ok.test:${web.port}/`)).code, 407, 'a server with another key refuses it');
  again.close();
});

t.test('ids differing only in case: each token opens only its own task', async (t) => {
  const { p, at } = await proxy();
  const upper = await p.openTcp('tsk_CaseA', ['ok.test']);
  const lower = await p.openTcp('tsk_casea', ['evil.test']);
  t.equal(new URL(upper.proxyUrl!).username, new URL(lower.proxyUrl!).username);
  t.match(await exchange(at, `CONNECT evil.test:${echo.port} HTTP/1.1\r\n${basicOf(upper.proxyUrl!)}\r\n\r\n`), /reason=not_allowlisted/, "judged by the upper-case task's list");
  const { sock } = await tunnel(at, `evil.test:${echo.port}`, [basicOf(lower.proxyUrl!)]);
  t.equal(await echoThrough(sock, 'x'), 'x');
  sock.destroy();
  await sleep(50);
  t.match(decisions('tsk_CaseA'), [{ host: 'evil.test', allowed: false }]);
  t.match(decisions('tsk_casea'), [{ host: 'evil.test', allowed: true }]);
  upper.close();
  lower.close();
});

t.test('every request on a kept-alive connection carries the credentials', async (t) => {
  const { p, at } = await proxy();
  const e = await p.openTcp(taskId(), ['ok.test']);
  const req = (path: string, auth: string) => `GET http://ok.test:${web.port}${path} HTTP/1.1\r\nHost: ok.test:${web.port}\r\nProxy-Connection: keep-alive\r\n${auth}\r\n`;
  const res = await exchange(at, req('/one', `${basicOf(e.proxyUrl!)}\r\n`) + req('/two', ''));
  t.match(res, /^HTTP\/1\.1 200 OK[\s\S]*hello \/one\n/);
  t.match(res, /HTTP\/1\.1 407 [\s\S]*reason=proxy_auth_missing/, 'the second request, without credentials');
  t.notOk(web.seen.some((s) => s.startsWith('GET /two')), 'never reached the upstream');
  e.close();
});

t.test('the first request head is bounded in size and in total time; connections waiting for one are bounded', async (t) => {
  const { p, at } = await proxy({ headerTimeoutSeconds: 1, maxHeaderBytes: 1024 }, undefined, 2);
  const e = await p.openTcp(taskId(), ['ok.test']);
  t.match(await exchange(at, `GET http://ok.test/ HTTP/1.1\r\nX-Big: ${'a'.repeat(2000)}\r\n\r\n`), /^HTTP\/1\.1 431 /);
  t.match(await exchange(at, 'GET /not-a-proxy-request HTTP/1.1\r\n\r\n'), /^HTTP\/1\.1 400 /);
  // A client dripping a byte every 200 ms never completes its head: answered 408 after ~1 s.
  const drip = net.connect(at.port, at.host);
  let got = '';
  drip.on('data', (c) => (got += c.toString()));
  drip.on('error', () => undefined);
  const started = Date.now();
  const timer = setInterval(() => drip.writable && drip.write('G'), 200);
  await Promise.race([closed(drip), sleep(5000)]);
  clearInterval(timer);
  drip.destroy();
  t.match(got, /^HTTP\/1\.1 408 [\s\S]*no complete request head within 1 s/);
  t.ok(Date.now() - started < 5000, 'bounded in total, not per byte');
  // Two silent connections fill the pending bound; a third is answered 503 at once.
  const silent = [net.connect(at.port, at.host), net.connect(at.port, at.host)];
  for (const s of silent) s.on('error', () => undefined);
  await Promise.all(silent.map((s) => new Promise((r) => s.once('connect', r))));
  await sleep(50);
  t.match(await exchange(at, ''), /^HTTP\/1\.1 503 [\s\S]*egress\.tcp\.maxPendingConnections/);
  for (const s of silent) s.destroy();
  await sleep(50);
  t.equal((await curl(e.proxyUrl!, `http://ok.test:${web.port}/after`)).code, 200, 'a client with a head is served once the silent ones went');
  e.close();
});

t.test('openTcp without a started listener is an error; after closeTcp the port is closed', async (t) => {
  const p = new EgressProxy(join(dir, `p${n++}`), base, createResolver(hosts), buildRangeList([]), store, pino({ level: 'silent' }));
  await t.rejects(p.openTcp(taskId(), ['ok.test']), /no TCP listener \(egress\.tcp\.listen is not set\)/);
  const { p: q, at } = await proxy();
  await q.closeTcp();
  const err = await new Promise<string>((r) => net.connect(at.port, at.host).once('error', (e: NodeJS.ErrnoException) => r(e.code ?? '')).once('connect', () => r('connected')));
  t.equal(err, 'ECONNREFUSED');
});

t.test('an advertised host name is resolved once at start: task proxy URLs hold the address (pods have no DNS)', async (t) => {
  const free = net.createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
  const port = (free.address() as net.AddressInfo).port;
  await new Promise((r) => free.close(r));
  const p = new EgressProxy(join(dir, `p${n++}`), base, createResolver(hosts), buildRangeList(['127.0.0.1/32']), store, pino({ level: 'silent' }));
  proxies.push(p);
  const asked: string[] = [];
  const lookup = async (host: string) => {
    asked.push(host);
    if (host === 'sandboxshift-egress.test') return '127.0.0.1';
    throw new Error(`ENOTFOUND ${host}`);
  };
  const opts = { host: '127.0.0.1', port, keyFile: join(dir, 'egress-tcp.key'), maxPendingConnections: 8, lookup };
  await t.rejects(p.startTcp({ ...opts, advertiseUrl: 'http://nowhere.test:3128' }), /egress\.tcp\.advertiseUrl http:\/\/nowhere\.test:3128: its host does not resolve \(ENOTFOUND nowhere\.test\)/);
  const address = await p.startTcp({ ...opts, advertiseUrl: `http://sandboxshift-egress.test:${port}` });
  t.same([address.advertiseUrl, address.proxyBase], [`http://sandboxshift-egress.test:${port}`, `http://127.0.0.1:${port}`]);
  const id = taskId();
  const e = await p.openTcp(id, ['ok.test']);
  t.match(e.proxyUrl, new RegExp(`^http://${id.toLowerCase()}:[0-9a-f]{64}@127\\.0\\.0\\.1:${port}$`));
  t.equal((await curl(e.proxyUrl!, `http://ok.test:${web.port}/resolved`)).code, 200);
  t.same(asked, ['nowhere.test', 'sandboxshift-egress.test'], 'looked up at start only, not per task');
  e.close();
});
