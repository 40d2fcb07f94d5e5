import Fastify from 'fastify';
import t from 'tap';
import { bearerKey, ConfigKeys, hashKey } from '../../src/auth/keys.js';
import { parseConfig } from '../../src/config/load.js';
import { registerAuthentication } from '../../src/http/authenticate.js';
import { registerErrorHandling } from '../../src/http/errors.js';

const KEY_A = 'ssk_' + 'a'.repeat(32);
const KEY_ADMIN = 'ssk_' + 'Z'.repeat(40);

async function app(keys: ConfigKeys) {
  const a = Fastify();
  registerErrorHandling(a);
  registerAuthentication(a, keys);
  a.get('/healthz', async (req) => req.principal);
  a.get('/v1/tasks', async (req) => req.principal);
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
