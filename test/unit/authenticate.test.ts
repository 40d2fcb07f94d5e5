import Fastify from 'fastify';
import t from 'tap';
import { bearerKey, ConfigKeys, hashKey } from '../../src/auth/keys.js';
import { parseConfig } from '../../src/config/load.js';
import { selectSubprotocol, subprotocolKey } from '../../src/auth/subprotocol.js';
import { registerAuthentication, requireAdmin } from '../../src/http/authenticate.js';
import { registerErrorHandling } from '../../src/http/errors.js';

const KEY_A = 'ssk_' + 'a'.repeat(32);
const KEY_ADMIN = 'ssk_' + 'Z'.repeat(40);

async function app(keys: ConfigKeys, opts: { required?: boolean } = {}) {
  const a = Fastify();
  registerErrorHandling(a);
  registerAuthentication(a, keys, opts);
  a.get('/healthz', async (req) => req.principal);
  a.get('/v1/tasks', async (req) => req.principal);
  a.get('/admin-only', { preHandler: requireAdmin }, async (req) => req.principal);
  await a.ready();
  return a;
}

t.test('bearerKey accepts only Bearer ssk_ keys', async (t) => {
  t.equal(bearerKey(`Bearer ${KEY_A}`), KEY_A);
  t.equal(bearerKey(`bearer  ${KEY_A}`), KEY_A, 'scheme is case-insensitive');
  for (const bad of [undefined, '', KEY_A, `Basic ${KEY_A}`, 'Bearer ssk_short', `Bearer ${KEY_A} extra`, `Bearer ${KEY_A.replace('ssk_', 'sk_')}`]) {
    t.equal(bearerKey(bad), null, `${JSON.stringify(bad)} is no key`);
  }
});

t.test('a server with keys: known keys act for their tenant, anything else is 401 UNAUTHENTICATED', async (t) => {
  const keys = new ConfigKeys([
    { id: 'k1', tenant: 'team-a', role: 'user', sha256: hashKey(KEY_A) },
    { id: 'root', tenant: 'ops', role: 'admin', sha256: hashKey(KEY_ADMIN) },
  ]);
  const a = await app(keys);
  t.teardown(() => a.close());
  const get = (url: string, authorization?: string) => a.inject({ url, headers: authorization ? { authorization } : {} });
  t.same((await get('/v1/tasks', `Bearer ${KEY_A}`)).json(), { tenant: 'team-a', keyId: 'k1', role: 'user' });
  t.same((await get('/v1/tasks', `Bearer ${KEY_ADMIN}`)).json(), { tenant: 'ops', keyId: 'root', role: 'admin' });
  const bodies = new Set<string>();
  for (const h of [undefined, 'Bearer ssk_' + 'b'.repeat(32), 'Bearer nonsense', `Basic ${KEY_A}`]) {
    const r = await get('/v1/tasks', h);
    t.equal(r.statusCode, 401, `${h ?? 'no header'} → 401`);
    t.equal(r.json().error.code, 'UNAUTHENTICATED');
    bodies.add(r.body);
  }
  t.equal(bodies.size, 1, 'missing, malformed and unknown keys read alike');
  t.equal((await get('/healthz')).statusCode, 200, '/healthz stays open');
  t.equal((await get('/v1/tasks?x=1')).statusCode, 401, 'a query string does not open a route');
});

t.test('a server without keys is open: every request acts as the default tenant', async (t) => {
  const a = await app(new ConfigKeys([]));
  t.teardown(() => a.close());
  t.same((await a.inject({ url: '/v1/tasks' })).json(), { tenant: 'default', keyId: null, role: 'admin' });
});

t.test('auth.keys is validated: hashes only, unique ids and hashes', async (t) => {
  const k = { id: 'k1', tenant: 'team-a', sha256: hashKey(KEY_A) };
  t.equal(parseConfig({ auth: { keys: [k] } }).auth.keys[0]!.role, 'user', 'role defaults to user');
  t.throws(() => parseConfig({ auth: { keys: [{ ...k, sha256: KEY_A }] } }), 'a key instead of its hash is refused');
  t.throws(() => parseConfig({ auth: { keys: [k, { ...k, sha256: hashKey(KEY_ADMIN) }] } }), 'duplicate ids are refused');
  t.throws(() => parseConfig({ auth: { keys: [k, { ...k, id: 'k2' }] } }), 'duplicate hashes are refused');
  t.throws(() => parseConfig({ auth: { keys: [{ ...k, tenant: 'Team A' }] } }), 'tenant names are restricted');
});

const twoKeys = () =>
  new ConfigKeys([
    { id: 'k1', tenant: 'team-a', role: 'user', sha256: hashKey(KEY_A) },
    { id: 'root', tenant: 'ops', role: 'admin', sha256: hashKey(KEY_ADMIN) },
  ]);

t.test('subprotocolKey: sandboxshift.v1 with exactly one bearer.<key>', async (t) => {
  t.equal(subprotocolKey(`sandboxshift.v1, bearer.${KEY_A}`), KEY_A);
  t.equal(subprotocolKey(`bearer.${KEY_A},sandboxshift.v1`), KEY_A, 'in any order');
  t.equal(subprotocolKey(['sandboxshift.v1', `bearer.${KEY_A}`]), KEY_A, 'over several headers');
  for (const bad of [undefined, `bearer.${KEY_A}`, 'sandboxshift.v1', `sandboxshift.v1, bearer.${KEY_A}, bearer.${KEY_ADMIN}`, 'sandboxshift.v1, bearer.nonsense', `sandboxshift.v2, bearer.${KEY_A}`]) {
    t.equal(subprotocolKey(bad), null, `${JSON.stringify(bad)} offers no key`);
  }
  t.equal(selectSubprotocol(new Set([`bearer.${KEY_A}`, 'sandboxshift.v1'])), 'sandboxshift.v1', 'the server picks sandboxshift.v1, never the key');
  t.equal(selectSubprotocol(new Set([`bearer.${KEY_A}`])), false);
});

t.test('the bearer subprotocol authenticates WebSocket upgrades only', async (t) => {
  const a = await app(twoKeys());
  t.teardown(() => a.close());
  const protocols = { 'sec-websocket-protocol': `sandboxshift.v1, bearer.${KEY_A}` };
  const upgrade = { connection: 'Upgrade', upgrade: 'websocket' };
  t.same((await a.inject({ url: '/v1/tasks', headers: { ...upgrade, ...protocols } })).json(), { tenant: 'team-a', keyId: 'k1', role: 'user' }, 'an upgrade offering the key acts for it');
  t.equal((await a.inject({ url: '/v1/tasks', headers: protocols })).statusCode, 401, 'a plain request offering subprotocols is not authenticated by them');
  const unknown = await a.inject({ url: '/v1/tasks', headers: { ...upgrade, 'sec-websocket-protocol': `sandboxshift.v1, bearer.ssk_${'q'.repeat(40)}` } });
  t.equal(unknown.statusCode, 401, 'an unknown key in the subprotocol is 401');
  t.equal(unknown.json().error.code, 'UNAUTHENTICATED');
});

t.test('requireAdmin: admin keys pass, user keys get 403 ADMIN_REQUIRED; a server without keys lets everyone through', async (t) => {
  const a = await app(twoKeys());
  t.teardown(() => a.close());
  const get = (authorization?: string) => a.inject({ url: '/admin-only', headers: authorization ? { authorization } : {} });
  t.equal((await get(`Bearer ${KEY_ADMIN}`)).statusCode, 200);
  const user = await get(`Bearer ${KEY_A}`);
  t.equal(user.statusCode, 403);
  t.equal(user.json().error.code, 'ADMIN_REQUIRED');
  t.equal((await get()).statusCode, 401, 'no key is 401 first');
  const open = await app(new ConfigKeys([]));
  t.teardown(() => open.close());
  t.equal((await open.inject({ url: '/admin-only' })).statusCode, 200, 'without keys the route is open');
});

t.test('required: a server listening beyond loopback never falls open, even without any key', async (t) => {
  const a = await app(new ConfigKeys([]), { required: true });
  t.teardown(() => a.close());
  t.equal((await a.inject({ url: '/v1/tasks' })).statusCode, 401, 'no key: 401, not open access');
  t.equal((await a.inject({ url: '/admin-only' })).statusCode, 401);
  t.equal((await a.inject({ url: '/healthz' })).statusCode, 200, '/healthz stays open');
});
