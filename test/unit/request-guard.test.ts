import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { isHostEntry, isSerializedOrigin, parseHost, RequestGuard, type GuardInput } from '../../src/http/request-guard.js';

const guard = (over: Partial<ConstructorParameters<typeof RequestGuard>[0]> = {}) =>
  new RequestGuard({ listenHost: '127.0.0.1', allowedHosts: [], allowedOrigins: [], ...over });
const req = (over: Partial<GuardInput>): GuardInput => ({
  host: '127.0.0.1:8080',
  origin: undefined,
  secFetchSite: undefined,
  localAddress: '127.0.0.1',
  ...over,
});
const code = (g: RequestGuard, over: Partial<GuardInput>) => g.check(req(over))?.code ?? 'ok';

t.test('parseHost normalises like a browser and refuses what is not host[:port]', async (t) => {
  t.same(parseHost('LocalHost:8080'), { hostname: 'localhost', port: 8080 });
  t.same(parseHost('[::1]'), { hostname: '[::1]', port: null });
  t.same(parseHost('[0:0:0:0:0:0:0:1]:9'), { hostname: '[::1]', port: 9 });
  t.same(parseHost('2130706433'), { hostname: '127.0.0.1', port: null }, 'numeric IPv4 forms are the address');
  for (const bad of ['', ':80', 'evil.test@127.0.0.1', '127.0.0.1/x', 'a b', 'host:0', 'host:65536', '[::1', '::1', '[zz::1]', 'h:80:80', '127.0.0.1#x']) {
    t.equal(parseHost(bad), null, `${JSON.stringify(bad)} is refused`);
  }
});

t.test('Host: loopback names, the listen address, the local address and allowedHosts pass; others are 421', async (t) => {
  const g = guard({ listenHost: '10.1.2.3', allowedHosts: ['sbx.example.com'] });
  for (const host of ['localhost', 'localhost:1', '127.0.0.1:8080', '127.8.9.10', '[::1]:8080', '10.1.2.3:8080', 'SBX.example.com', 'sbx.example.com:443']) {
    t.equal(code(g, { host }), 'ok', `${host} passes (any port or none)`);
  }
  for (const host of ['evil.test:8080', '127.0.0.1.evil.test', 'localhost.', 'sub.sbx.example.com', '10.1.2.4', 'localhost.evil.test:8080', 'evil.test@localhost']) {
    t.same(g.check(req({ host })), { code: 'HOST_NOT_ALLOWED', details: { host } }, `${host} is refused`);
  }
  t.same(g.check(req({ host: undefined })), { code: 'HOST_NOT_ALLOWED', details: { host: null } }, 'no Host at all');
  t.equal(code(guard({ listenHost: '0.0.0.0' }), { host: '192.168.7.7:8080', localAddress: '192.168.7.7' }), 'ok', 'the address the connection arrived on');
  t.equal(code(guard({ listenHost: '::' }), { host: '192.168.7.7', localAddress: '::ffff:192.168.7.7' }), 'ok', 'also as an IPv4-mapped local address');
  t.equal(code(guard({ listenHost: '::' }), { host: '[fe80::1]:80', localAddress: 'fe80::1' }), 'ok', 'an IPv6 local address');
  t.equal(code(guard({ listenHost: '0.0.0.0' }), { host: '0.0.0.0:8080', localAddress: '192.168.7.7' }), 'HOST_NOT_ALLOWED', 'a wildcard listen address names nothing');
  t.equal(code(guard({ listenHost: 'sbx.lan' }), { host: 'sbx.lan:8080', localAddress: '192.168.7.7' }), 'ok', 'a listen host name');
});

t.test("Origin: only the server's own origin or a listed one; Sec-Fetch-Site cross-site/same-site is foreign", async (t) => {
  const g = guard({ allowedOrigins: ['https://app.example.com'] });
  t.equal(code(g, {}), 'ok', 'no Origin, no Sec-Fetch-Site (curl, SDKs)');
  t.equal(code(g, { origin: 'http://127.0.0.1:8080' }), 'ok', 'same origin');
  t.equal(code(g, { host: 'localhost', origin: 'http://localhost' }), 'ok', 'same origin on port 80');
  t.equal(code(g, { host: 'localhost:80', origin: 'http://localhost' }), 'ok', 'explicit :80 is the same origin');
  t.equal(code(g, { host: '[::1]:8080', origin: 'http://[::1]:8080' }), 'ok', 'IPv6 same origin');
  t.equal(code(g, { origin: 'https://app.example.com', secFetchSite: 'cross-site' }), 'ok', 'a listed origin, cross-site');
  t.equal(code(g, { origin: 'http://127.0.0.1:8080', secFetchSite: 'same-origin' }), 'ok');
  t.equal(code(g, { secFetchSite: 'none' }), 'ok', 'typed into the address bar');
  for (const origin of [
    'https://evil.test',
    'null',
    'http://127.0.0.1.evil.test',
    'http://127.0.0.1.evil.test:8080',
    'http://127.0.0.1:8081',
    'https://127.0.0.1:8080',
    'http://127.0.0.1:8080/',
    'http://localhost:8080',
    'https://app.example.com.evil.test',
    'http://app.example.com',
    'https://app.example.com, https://evil.test',
    '',
  ]) {
    t.same(g.check(req({ origin })), { code: 'ORIGIN_NOT_ALLOWED', details: { origin } }, `Origin ${JSON.stringify(origin)} is foreign`);
  }
  t.same(g.check(req({ secFetchSite: 'cross-site' })), { code: 'ORIGIN_NOT_ALLOWED', details: { origin: null, secFetchSite: 'cross-site' } });
  t.equal(code(g, { secFetchSite: 'same-site' }), 'ORIGIN_NOT_ALLOWED', 'another origin on the same site');
  t.equal(code(g, { origin: 'http://127.0.0.1:8080', secFetchSite: 'Cross-Site' }), 'ORIGIN_NOT_ALLOWED', 'a same-origin Origin with a cross-site fetch is refused');
  t.equal(code(g, { host: 'evil.test:8080', origin: 'http://evil.test:8080' }), 'HOST_NOT_ALLOWED', 'a rebinding page is same-origin to itself, and fails on Host');
  t.equal(g.check(req({ origin: 'x'.repeat(5000) }))!.details.origin!.length, 256, 'the echoed value is bounded');
});

t.test('config: entries are checked, lists bounded, defaults empty', async (t) => {
  t.same(parseConfig({}).http, { allowedHosts: [], allowedOrigins: [] });
  t.ok(isSerializedOrigin('https://app.example.com:8443'));
  for (const bad of ['https://app.example.com/', 'app.example.com', 'ftp://x.test', 'null', 'HTTPS://A.test', 'https://a.test:443']) {
    t.notOk(isSerializedOrigin(bad), `${bad} is not an origin entry`);
  }
  t.ok(isHostEntry('sbx.example.com') && isHostEntry('[2001:db8::1]') && isHostEntry('10.0.0.1'));
  for (const bad of ['Sbx.example.com', 'sbx.example.com:80', '2001:db8::1', '', 'a/b']) t.notOk(isHostEntry(bad), `${bad} is not a host entry`);
  t.throws(() => parseConfig({ http: { allowedOrigins: ['https://a.test/'] } }), /http\.allowedOrigins\.0/);
  t.throws(() => parseConfig({ http: { allowedHosts: ['a.test:80'] } }), /http\.allowedHosts\.0/);
  t.throws(() => parseConfig({ http: { allowedHosts: Array.from({ length: 65 }, (_, i) => `h${i}.test`) } }), /http\.allowedHosts/);
  t.throws(() => parseConfig({ http: { allowedOrigins: Array.from({ length: 65 }, (_, i) => `https://h${i}.test`) } }), /http\.allowedOrigins/);
  t.throws(() => parseConfig({ http: { other: 1 } }), /http/);
});
