// The TCP listener's per-task credentials: derivation, the key file, what a request head
// presents, and the egress.tcp configuration.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { credentialUrl, deriveCredential, loadCredentialKey, presentedCredential, tokenMatches } from '../../src/egress/credentials.js';
import { listenAddress } from '../../src/egress/listen-address.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-cred-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const keyA = Buffer.alloc(32, 1);
const keyB = Buffer.alloc(32, 2);
const basic = (s: string) => `Basic ${Buffer.from(s).toString('base64')}`;

t.test('a credential is the lower-cased task id and an HMAC of the exact id under the server key', async (t) => {
  const c = deriveCredential(keyA, 'tsk_AbC-d_9');
  t.equal(c.user, 'tsk_abc-d_9');
  t.match(c.token, /^[0-9a-f]{64}$/);
  t.same(deriveCredential(keyA, 'tsk_AbC-d_9'), c, 'derived again (a restarted server): the same');
  t.not(deriveCredential(keyB, 'tsk_AbC-d_9').token, c.token, 'another server key: another token');
  const lower = deriveCredential(keyA, 'tsk_abc-d_9');
  t.equal(lower.user, c.user, 'ids differing only in case share the user');
  t.not(lower.token, c.token, '... never the token');
  t.ok(tokenMatches(c.token, c.token));
  t.notOk(tokenMatches(c.token, lower.token));
  t.notOk(tokenMatches(c.token, c.token.slice(0, 63)), 'a prefix is no match');
  t.notOk(tokenMatches(c.token, ''));
});

t.test('the proxy URL carries the credentials on the advertised host and port', async (t) => {
  const c = deriveCredential(keyA, 'tsk_X');
  t.equal(credentialUrl('http://sandboxshift-egress.sandboxshift-system.svc:3128', c), `http://tsk_x:${c.token}@sandboxshift-egress.sandboxshift-system.svc:3128`);
  t.equal(credentialUrl('http://10.0.0.5:3128/', c), `http://tsk_x:${c.token}@10.0.0.5:3128`);
  t.equal(new URL(credentialUrl('http://[fd00::5]:3128', c)).username, 'tsk_x', 'a URL clients parse back');
});

t.test('what a request head presents: exactly one Basic user:token field', async (t) => {
  t.same(presentedCredential([['Host', 'x']]), { kind: 'missing' });
  t.same(presentedCredential([['proxy-authorization', basic('tsk_a:tok')]]), { kind: 'basic', user: 'tsk_a', token: 'tok' });
  t.same(presentedCredential([['Proxy-Authorization', `bAsIc   ${Buffer.from('u:p:q').toString('base64')}`]]), { kind: 'basic', user: 'u', token: 'p:q' }, 'scheme case-insensitive; the token is all after the first colon');
  t.match(presentedCredential([['Proxy-Authorization', basic('a:b')], ['Proxy-Authorization', basic('a:b')]]), { kind: 'malformed', why: /more than one/ });
  t.match(presentedCredential([['Proxy-Authorization', 'Bearer abc']]), { kind: 'malformed', why: /Basic/ });
  t.match(presentedCredential([['Proxy-Authorization', 'Basic !!!']]), { kind: 'malformed' });
  t.match(presentedCredential([['Proxy-Authorization', basic('no-colon')]]), { kind: 'malformed', why: /user:token/ });
  t.match(presentedCredential([['Proxy-Authorization', basic(':token')]]), { kind: 'malformed', why: /user:token/ }, 'an empty user');
  t.match(presentedCredential([['Proxy-Authorization', basic(`u:${'x'.repeat(2000)}`)]]), { kind: 'malformed', why: /too long/ });
});

t.test('the key file: created once with mode 0600, then read; a readable or short one is refused', async (t) => {
  const path = join(dir, 'egress-tcp.key');
  const k1 = loadCredentialKey(path);
  t.equal(k1.length, 32);
  t.equal(statSync(path).mode & 0o777, 0o600);
  t.same(loadCredentialKey(path), k1, 'the second start reads the same key');
  t.same(readFileSync(path), k1);
  chmodSync(path, 0o644);
  t.throws(() => loadCredentialKey(path), /must be a regular file of mode 0600/);
  const short = join(dir, 'short.key');
  writeFileSync(short, 'abc', { mode: 0o600 });
  t.throws(() => loadCredentialKey(short), /is not 32 bytes/);
  t.not(loadCredentialKey(join(dir, 'other.key')).toString('hex'), k1.toString('hex'), 'another data directory: another key');
});

t.test('egress.tcp.listen is IP:port; advertiseUrl is needed when listen binds every interface', async (t) => {
  t.same(listenAddress('0.0.0.0:3128'), { host: '0.0.0.0', port: 3128 });
  t.same(listenAddress('[::]:3128'), { host: '::', port: 3128 });
  t.same(listenAddress('10.1.2.3:1'), { host: '10.1.2.3', port: 1 });
  for (const bad of ['3128', 'proxy:3128', '0.0.0.0', '0.0.0.0:0', '0.0.0.0:65536', '[0.0.0.0]:80', '::1:80', '300.1.1.1:80']) {
    t.equal(listenAddress(bad), null, bad);
  }
  const tcp = (v: unknown) => parseConfig({ egress: { tcp: v } }).egress.tcp;
  t.same(tcp(undefined), { listen: null, advertiseUrl: null, maxPendingConnections: 256 }, 'off by default');
  t.same(tcp({ listen: '127.0.0.1:3128' }).advertiseUrl, null, 'a concrete address needs no advertiseUrl');
  t.same(tcp({ listen: '0.0.0.0:3128', advertiseUrl: 'http://sandboxshift-egress.sandboxshift-system.svc:3128' }).listen, '0.0.0.0:3128');
  t.throws(() => tcp({ listen: '0.0.0.0:3128' }), ConfigError);
  t.throws(() => tcp({ listen: '0.0.0.0:3128' }), /advertiseUrl: must be set when listen binds every interface/);
  t.throws(() => tcp({ listen: 'proxy:3128' }), /must be IP:port/);
  t.throws(() => tcp({ listen: '127.0.0.1:3128', advertiseUrl: 'http://u:p@proxy:3128' }), /must be http:\/\/host:port/);
  t.throws(() => tcp({ listen: '127.0.0.1:3128', maxPendingConnections: 0 }), ConfigError);
});
