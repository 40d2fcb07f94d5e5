/**
 * The egress proxy on its own: real Unix sockets, real loopback upstream servers the test owns,
 * a real SQLite store. Every refusal has a positive control: the same connection succeeds when
 * the one thing under test is changed (a name instead of a literal, a test range that allows the
 * address, a listed port).
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { buildRangeList, createResolver } from '../../src/egress/addresses.js';
import { EgressProxy, type ProxySettings } from '../../src/egress/proxy.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { closed, echoThrough, echoUpstream, exchange, httpUpstream, proxySettings, tunnel } from '../helpers/egress.js';
import { sleep } from '../helpers/host.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-proxy-'));
const store = new SqliteStore(join(dir, 'db.sqlite'));
const echo = await echoUpstream(['127.0.0.1', '127.0.0.2']);
const web = await httpUpstream(['127.0.0.1']);
const other = await echoUpstream(['127.0.0.1']); // a loopback service on a port the proxy does not serve
t.teardown(async () => {
  await echo.close();
  await web.close();
  await other.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const hosts = {
  'ok.test': ['127.0.0.1'],
  'sub.ok.test': ['127.0.0.1'],
  'rebind.test': ['127.0.0.2'],
  'mixed.test': ['127.0.0.2', '127.0.0.1'],
  'metadata.test': ['169.254.169.254'],
  'private.test': ['10.1.2.3', 'fd00::1'],
};
const base = proxySettings([80, 443, echo.port, web.port]);
let n = 0;
function proxy(over: Partial<ProxySettings> = {}, ranges = ['127.0.0.1/32']) {
  const p = new EgressProxy(join(dir, `p${n++}`), { ...base, ...over }, createResolver(hosts), buildRangeList(ranges), store, pino({ level: 'silent' }));
  p.prepare();
  return p;
}
const taskId = () => `tsk_test${String(n++).padStart(12, '0')}`;
const decisions = (id: string) => store.egressDecisions(id).decisions;

t.test('the socket belongs to UID 65532 only; CONNECT to an allowed name tunnels bytes and records them', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test']);
  const st = statSync(e.socketPath);
  t.equal(st.uid, 65532);
  t.equal(st.mode & 0o777, 0o600);
  const { sock } = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  t.equal(await echoThrough(sock, 'ping through the tunnel'), 'ping through the tunnel');
  sock.end();
  await closed(sock);
  await sleep(50);
  t.match(decisions(id), [{ host: 'ok.test', port: echo.port, allowed: true, reason: 'allowlisted', address: '127.0.0.1', bytesUp: 23, bytesDown: 23 }]);
  e.close();
  t.notOk(existsSync(e.socketPath), 'close removes the socket');
});

t.test('absolute-URI HTTP is forwarded in origin form with Connection: close', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test']);
  const res = await exchange(e.socketPath, `GET http://ok.test:${web.port}/path?q=1 HTTP/1.1\r\nHost: ok.test\r\nProxy-Connection: keep-alive\r\n\r\n`);
  t.match(res, /^HTTP\/1\.1 200 OK/);
  t.match(res, /hello \/path\?q=1\n$/);
  t.equal(web.seen.at(-1), `GET /path?q=1 host=ok.test:${web.port} connection=close`);
  e.close();
});

t.test('denied names, ports and literals are refused with a clear proxy error and recorded', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['*.ok.test']);
  const ask = (target: string) => exchange(e.socketPath, `CONNECT ${target} HTTP/1.1\r\n\r\n`);
  // Positive control: a subdomain the wildcard covers works on the same proxy.
  const ok = await tunnel(e.socketPath, `sub.ok.test:${echo.port}`);
  t.equal(await echoThrough(ok.sock, 'x'), 'x');
  ok.sock.destroy();
  const apex = await ask(`ok.test:${echo.port}`);
  t.match(apex, /^HTTP\/1\.1 403 Forbidden\r\n/);
  t.match(apex, /X-SandboxShift-Egress: denied; reason=not_allowlisted/);
  t.match(apex, /sandboxshift egress proxy: 403 Forbidden: ok\.test:\d+: not_allowlisted/);
  t.match(await ask(`other.test:${echo.port}`), /reason=not_allowlisted/);
  t.match(await ask(`127.0.0.1:${echo.port}`), /^HTTP\/1\.1 403 [\s\S]*reason=ip_literal/, 'IPv4 literal (the same server a name reaches)');
  t.match(await ask(`[::1]:${echo.port}`), /reason=ip_literal/, 'IPv6 literal');
  t.match(await ask(`2130706433:${echo.port}`), /reason=ip_literal/, 'inet_aton spelling');
  t.match(await ask(`sub.ok.test:${other.port}`), /reason=port_not_allowed/, 'a loopback service on a port the proxy does not serve');
  // A port left in the host part (`name:p1:p2`): whichever of them is served, it is a port refusal.
  t.match(await ask(`sub.ok.test:443:${other.port}`), /^HTTP\/1\.1 403 [\s\S]*reason=port_not_allowed/, 'a second port after the host');
  t.match(await ask(`sub.ok.test:${other.port}:${echo.port}`), /reason=port_not_allowed/, 'even when the last port is served');
  t.match(await exchange(e.socketPath, `GET http://sub.ok.test:${other.port}:80/ HTTP/1.1\r\n\r\n`), /reason=port_not_allowed/, 'absolute URI');
  t.match(await ask(`evil.test:443:${other.port}`), /reason=not_allowlisted/, 'a name outside the list is that first');
  t.match(await ask(`[sub.ok.test]:${echo.port}`), /reason=invalid_host/, 'brackets hold addresses only');
  await sleep(50);
  t.same(
    decisions(id).map((d) => [d.host, d.allowed, d.reason]),
    [
      ['sub.ok.test', true, 'allowlisted'],
      ['ok.test', false, 'not_allowlisted'],
      ['other.test', false, 'not_allowlisted'],
      ['127.0.0.1', false, 'ip_literal'],
      ['[::1]', false, 'ip_literal'],
      ['2130706433', false, 'ip_literal'],
      ['sub.ok.test', false, 'port_not_allowed'],
      ['sub.ok.test', false, 'port_not_allowed'],
      ['sub.ok.test', false, 'port_not_allowed'],
      ['sub.ok.test', false, 'port_not_allowed'],
      ['evil.test', false, 'not_allowlisted'],
      ['[sub.ok.test]', false, 'invalid_host'],
    ],
  );
  t.equal(echo.open.size, 0, 'no refused request reached the upstream');
  e.close();
});

t.test('rebinding: an allowed name resolving to a forbidden address is refused; a test range opens it (positive control)', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['rebind.test', 'metadata.test', 'mixed.test', 'private.test']);
  const r = await exchange(e.socketPath, `CONNECT rebind.test:${echo.port} HTTP/1.1\r\n\r\n`);
  t.match(r, /^HTTP\/1\.1 403 [\s\S]*reason=forbidden_address:loopback/);
  t.match(await exchange(e.socketPath, `CONNECT metadata.test:80 HTTP/1.1\r\n\r\n`), /reason=forbidden_address:link_local/);
  // Refused before any connect (nothing listens there; the categories are unit-tested).
  t.match(await exchange(e.socketPath, `CONNECT private.test:443 HTTP/1.1\r\n\r\n`), /reason=forbidden_address:private/);
  // A name with one forbidden and one allowed address: the proxy connects to the one it checked.
  const mixed = await tunnel(e.socketPath, `mixed.test:${echo.port}`);
  t.equal(await echoThrough(mixed.sock, 'm'), 'm');
  mixed.sock.destroy();
  await sleep(50);
  t.match(decisions(id), [
    { host: 'rebind.test', allowed: false, reason: 'forbidden_address:loopback', address: '127.0.0.2' },
    { host: 'metadata.test', allowed: false, reason: 'forbidden_address:link_local', address: '169.254.169.254' },
    { host: 'private.test', allowed: false, reason: 'forbidden_address:private', address: '10.1.2.3' },
    { host: 'mixed.test', allowed: true, address: '127.0.0.1' },
  ]);
  e.close();

  const control = await proxy({}, ['127.0.0.1/32', '127.0.0.2/32']).open(taskId(), ['rebind.test']);
  const c = await tunnel(control.socketPath, `rebind.test:${echo.port}`);
  t.equal(await echoThrough(c.sock, 'control'), 'control', 'with 127.0.0.2 in the test ranges the same CONNECT works');
  c.sock.destroy();
  control.close();
});

t.test('garbage, slow heads and oversized heads are answered and closed; the proxy keeps serving', async (t) => {
  const e = await proxy({ headerTimeoutSeconds: 1, maxHeaderBytes: 1024 }).open(taskId(), ['ok.test']);
  t.match(await exchange(e.socketPath, Buffer.from([0x16, 0x03, 0x01, 0, 0x2e, 1, 0, 0, 0x2a, 3, 3, 13, 10, 13, 10])), /^HTTP\/1\.1 400 /);
  t.match(await exchange(e.socketPath, 'GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n'), /^HTTP\/1\.1 400 [\s\S]*not a proxy request/);
  t.match(await exchange(e.socketPath, `GET http://ok.test/ HTTP/1.1\r\nX: ${'a'.repeat(2000)}`), /^HTTP\/1\.1 431 /);
  t.match(await exchange(e.socketPath, 'CONNECT ok.te'), /^HTTP\/1\.1 408 /, 'a head that never completes times out');
  t.equal(await exchange(e.socketPath, '', { endAfterWrite: true }), '', 'an immediate close is fine');
  const after = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  t.equal(await echoThrough(after.sock, 'still up'), 'still up');
  after.sock.destroy();
  e.close();
});

t.test('connections per task are bounded; idle tunnels are closed', async (t) => {
  const e = await proxy({ maxConnectionsPerTask: 2, idleTimeoutSeconds: 1 }).open(taskId(), ['ok.test']);
  const a = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  const b = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  t.match(await exchange(e.socketPath, `CONNECT ok.test:${echo.port} HTTP/1.1\r\n\r\n`), /^HTTP\/1\.1 503 [\s\S]*maxConnectionsPerTask/);
  a.sock.destroy();
  await sleep(100);
  const c = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  t.equal(await echoThrough(c.sock, 'c'), 'c', 'a slot frees when a tunnel closes');
  await Promise.all([closed(b.sock), closed(c.sock)]);
  t.pass('idle tunnels were closed by the proxy');
  t.equal(e.connections, 0);
  e.close();
});

t.test('closing a task tears down its tunnels, records their bytes and removes the socket', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test']);
  const a = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  await echoThrough(a.sock, 'abc');
  t.equal(echo.open.size, 1, 'the upstream has the tunnel open');
  e.close();
  await closed(a.sock);
  await sleep(100);
  t.equal(echo.open.size, 0, 'the upstream side is closed too');
  t.notOk(existsSync(e.socketPath));
  t.match(decisions(id), [{ allowed: true, bytesUp: 3, bytesDown: 3 }], 'bytes are final when the task ends');
  await t.rejects(tunnel(e.socketPath, `ok.test:${echo.port}`), 'nothing listens any more');
});

t.test('decisions per task are bounded; the rest are counted as dropped', async (t) => {
  const id = taskId();
  const e = await proxy({ maxDecisionsPerTask: 2 }).open(id, ['ok.test']);
  for (let i = 0; i < 4; i++) await exchange(e.socketPath, `CONNECT nope${i}.test:443 HTTP/1.1\r\n\r\n`);
  t.same(store.egressDecisions(id).decisions.map((d) => d.host), ['nope0.test', 'nope1.test']);
  t.equal(store.egressDecisions(id).dropped, 2);
  e.close();
});

t.test('every decision is written to the structured log; a failed lookup is a decision too', async (t) => {
  const lines: any[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  // Names outside the table fail here instead of reaching the system resolver (tests stay on this machine).
  const tableOnly = createResolver(hosts);
  const resolve = async (h: string) => {
    if (!(h in hosts)) throw new Error(`ENOTFOUND ${h}`);
    return tableOnly(h);
  };
  const p = new EgressProxy(join(dir, 'logged'), base, resolve, buildRangeList(['127.0.0.1/32']), store, pino(sink));
  p.prepare();
  const id = taskId();
  const e = await p.open(id, ['ok.test', 'nxdomain.invalid']);
  const ok = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  await echoThrough(ok.sock, 'logged');
  ok.sock.destroy();
  await exchange(e.socketPath, 'CONNECT evil.test:443 HTTP/1.1\r\n\r\n');
  t.match(await exchange(e.socketPath, 'CONNECT nxdomain.invalid:443 HTTP/1.1\r\n\r\n'), /^HTTP\/1\.1 502 [\s\S]*reason=resolve_failed/);
  await sleep(100);
  e.close();
  t.match(lines.filter((l) => l.egress), [
    { taskId: id, msg: 'egress allowed', egress: { host: 'ok.test', allowed: true, reason: 'allowlisted', address: '127.0.0.1' } },
    { taskId: id, msg: 'egress denied', egress: { host: 'evil.test', allowed: false, reason: 'not_allowlisted' } },
    { taskId: id, msg: 'egress denied', egress: { host: 'nxdomain.invalid', allowed: false, reason: 'resolve_failed' } },
  ]);
  t.match(lines.find((l) => l.msg === 'egress connection closed'), { taskId: id, host: 'ok.test', bytesUp: 6, bytesDown: 6 });
});

t.test('start-up removes sockets a crashed server left behind', async (t) => {
  const d = join(dir, 'stale');
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'tsk_old.sock'), '');
  const p = new EgressProxy(d, base, createResolver(hosts), buildRangeList([]), store, pino({ level: 'silent' }));
  p.prepare();
  t.notOk(existsSync(join(d, 'tsk_old.sock')));
  t.equal(statSync(d).mode & 0o777, 0o700, 'the socket directory is root-only');
});

t.test("a name resolving to one of the host's own (public-looking) addresses is refused", async (t) => {
  // 198.51.99.7 stands for the server's public IP: the proxy refuses it before any connect, so
  // no packet leaves this machine. (The accepting side is covered in test/unit/addresses.test.ts:
  // a positive control here would have to connect to a public address.)
  const p = new EgressProxy(join(dir, 'self'), base, createResolver({ 'self.test': ['198.51.99.7'] }), buildRangeList(['127.0.0.1/32']), store, pino({ level: 'silent' }), () => new Set(['127.0.0.1', '198.51.99.7']));
  p.prepare();
  const id = taskId();
  const e = await p.open(id, ['self.test']);
  t.match(await exchange(e.socketPath, 'CONNECT self.test:443 HTTP/1.1\r\n\r\n'), /reason=forbidden_address:local_interface/);
  t.match(decisions(id), [{ host: 'self.test', allowed: false, reason: 'forbidden_address:local_interface', address: '198.51.99.7' }]);
  e.close();
});

t.test('a burst of clients that reset, flood or vanish does not take the proxy down', async (t) => {
  const { connect } = await import('node:net');
  const { randomBytes } = await import('node:crypto');
  const e = await proxy({ maxConnectionsPerTask: 2, headerTimeoutSeconds: 2 }).open(taskId(), ['ok.test']);
  const held = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  const abusers = Array.from({ length: 60 }, (_, i) => {
    const c = connect(e.socketPath);
    c.on('error', () => undefined);
    c.on('connect', () => {
      if (i % 3 === 0) {
        c.write('GET / HTTP/1.1\r\n\r\n'); // answered with a 400 that finds the client gone (EPIPE)
        c.destroy();
      }
      else if (i % 3 === 1) c.end(randomBytes(2000));
      else c.write(`CONNECT ok.test:${echo.port} HTTP/1.1\r\n`); // never finishes its head
    });
    return c;
  });
  await sleep(2500);
  for (const c of abusers) c.destroy();
  t.equal(await echoThrough(held.sock, 'still here'), 'still here', 'the established tunnel was not disturbed');
  held.sock.destroy();
  await sleep(100);
  const after = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  t.equal(await echoThrough(after.sock, 'new'), 'new', 'new connections are served once the burst is gone');
  after.sock.destroy();
  e.close();
});
