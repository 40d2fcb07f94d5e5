import t from 'tap';
import { hashKey } from '../../src/auth/keys.js';
import { api } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

// Per-tenant quotas and fairness on a real server with real Podman: a tenant at its running or
// queued limit waits or gets 429 while another tenant's tasks still start; the queue serves
// tenants round-robin; requests per minute, failed authentications per address and the disk
// a tenant's workspaces take are bounded.

const QUOTA_MB = 16;
const key = (name: string) => `ssk_${name.replace(/[^A-Za-z0-9]/g, '')}${'Q'.repeat(32)}`;
const TENANTS = ['team-a', 'team-b', 'team-r', 'team-s'] as const;
const KEY: Record<(typeof TENANTS)[number], string> = Object.fromEntries(TENANTS.map((n) => [n, key(n)])) as never;

const srv = await startTestServer({
  auth: { keys: TENANTS.map((n) => ({ id: `k-${n}`, tenant: n, role: 'user', sha256: hashKey(KEY[n]) })) },
  queue: { concurrency: 2 },
  workspaces: { quotaMb: QUOTA_MB },
  requests: { authFailuresPerMinute: 3 },
  tenants: {
    overrides: {
      'team-a': { maxRunning: 1, maxQueued: 1 },
      'team-r': { requestsPerMinute: 5 },
      'team-s': { workspaceBytes: 2 * QUOTA_MB * 1024 * 1024 },
    },
  },
});
t.teardown(() => srv.close());

async function call(tenant: (typeof TENANTS)[number] | string, method: string, path: string, body?: unknown) {
  const bearer = tenant in KEY ? KEY[tenant as (typeof TENANTS)[number]] : tenant;
  return api(srv.url, method, path, body, { authorization: `Bearer ${bearer}` });
}

async function waitFor(tenant: (typeof TENANTS)[number], id: string, want: string[], ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await call(tenant, 'GET', `/v1/tasks/${id}`);
    if (want.includes(r.json?.status)) return r.json;
    if (Date.now() > end) throw new Error(`task ${id} stayed ${r.json?.status}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

const submit = async (tenant: (typeof TENANTS)[number], command: string) => {
  const r = await call(tenant, 'POST', '/v1/tasks', { command, timeoutSeconds: 120 });
  if (r.status !== 202) throw new Error(`submit: ${r.status} ${r.text}`);
  return r.json.id as string;
};

t.test('at maxRunning a tenant waits, at maxQueued it gets 429, while another tenant starts', async (t) => {
  const a1 = await submit('team-a', 'sleep 60');
  await waitFor('team-a', a1, ['running']);
  const a2 = await submit('team-a', 'echo a2');
  const full = await call('team-a', 'POST', '/v1/tasks', { command: 'echo a3' });
  t.equal(full.status, 429, 'one running and one waiting: the third is refused');
  t.equal(full.json.error.code, 'TENANT_QUEUED_LIMIT');
  t.match(full.json.error.details, { tenant: 'team-a', queued: 1, running: 1, maxQueued: 1, maxRunning: 1 });
  t.ok(Number(full.headers.get('retry-after')) >= 1, 'with Retry-After');
  // A global slot is free (concurrency 2), yet a2 waits: team-a is at its maxRunning.
  const b1 = await submit('team-b', 'echo b1');
  const b1Done = await waitFor('team-b', b1, ['succeeded', 'failed', 'error']);
  t.equal(b1Done.status, 'succeeded', "team-b's task started and ran while team-a was at its limits");
  t.equal((await call('team-a', 'GET', `/v1/tasks/${a2}`)).json.status, 'queued', 'a2 still waits for team-a\'s own slot');
  t.equal((await call('team-a', 'POST', `/v1/tasks/${a1}/cancel`)).status, 202);
  t.equal((await waitFor('team-a', a2, ['succeeded', 'failed', 'error'])).status, 'succeeded', 'a2 ran once a1 ended');
  t.equal((await call('team-a', 'POST', '/v1/tasks', { command: 'true' })).status, 202, 'and team-a may queue again');
});

t.test('fairness: another tenant\'s first task starts before the rest of a long queue', async (t) => {
  // Both run slots are taken by team-b's holders; team-b then queues three more, team-a one.
  const holders = [await submit('team-b', 'sleep 60'), await submit('team-b', 'sleep 60')];
  for (const h of holders) await waitFor('team-b', h, ['running']);
  const bQueued = [await submit('team-b', 'echo b-q1'), await submit('team-b', 'echo b-q2'), await submit('team-b', 'echo b-q3')];
  const late = await call('team-a', 'POST', '/v1/tasks', { command: 'echo a-first' });
  t.equal(late.status, 202, late.text);
  for (const h of holders) t.equal((await call('team-b', 'POST', `/v1/tasks/${h}/cancel`)).status, 202);
  const done = await Promise.all([...bQueued.map((id) => waitFor('team-b', id, ['succeeded'])), waitFor('team-a', late.json.id, ['succeeded'])]);
  // startedAt is stamped once a task's workspace is mounted: two tasks taken from the queue at
  // once (two slots freed together) may be stamped in either order, up to a mount apart. Starts
  // that close count as simultaneous and keep the order the tasks came in (createdAt).
  const SIMULTANEOUS_MS = 50;
  const order = done
    .sort((x, y) => {
      const d = Date.parse(x.startedAt) - Date.parse(y.startedAt);
      return Math.abs(d) > SIMULTANEOUS_MS ? d : Date.parse(x.createdAt) - Date.parse(y.createdAt);
    })
    .map((x) => x.command);
  t.ok(order.indexOf('echo a-first') <= 1, `team-a's only task is among the first two to start, not behind all of team-b's (start order: ${order.join(', ')})`);
  t.ok(order.indexOf('echo b-q1') < order.indexOf('echo b-q2') && order.indexOf('echo b-q2') < order.indexOf('echo b-q3'), "team-b's own tasks start in the order they came");
});

t.test('requests per minute per tenant: 429 RATE_LIMITED with Retry-After, others unaffected', async (t) => {
  for (let i = 0; i < 5; i++) t.equal((await call('team-r', 'GET', '/v1/tasks')).status, 200, `request ${i + 1} of 5`);
  const over = await call('team-r', 'GET', '/v1/tasks');
  t.equal(over.status, 429);
  t.equal(over.json.error.code, 'RATE_LIMITED');
  t.ok(Number(over.headers.get('retry-after')) >= 1 && Number(over.headers.get('retry-after')) <= 12, `Retry-After within a token's time (5 per minute): ${over.headers.get('retry-after')}`);
  t.equal((await call('team-b', 'GET', '/v1/tasks')).status, 200, 'another tenant is not limited');
});

t.test("a tenant's workspaces are bounded by the sum of their quotas: 413 TENANT_STORAGE_LIMIT", async (t) => {
  const made = [];
  for (let i = 0; i < 2; i++) {
    const r = await call('team-s', 'POST', '/v1/workspaces', { files: { 'f.txt': `${i}` } });
    t.equal(r.status, 201, r.text);
    made.push(r.json.id as string);
  }
  const before = (await call('team-s', 'GET', '/v1/workspaces?limit=100')).json.workspaces.length;
  const third = await call('team-s', 'POST', '/v1/workspaces', { files: { 'f.txt': 'x' } });
  t.equal(third.status, 413);
  t.equal(third.json.error.code, 'TENANT_STORAGE_LIMIT');
  t.match(third.json.error.details, { tenant: 'team-s', limitBytes: 2 * QUOTA_MB * 1024 * 1024, requestedBytes: QUOTA_MB * 1024 * 1024 });
  const inline = await call('team-s', 'POST', '/v1/tasks', { command: 'true', workspace: { files: { 'g.txt': 'y' } } });
  t.equal(inline.json?.error?.code, 'TENANT_STORAGE_LIMIT', "a task's own inline workspace counts too");
  t.equal((await call('team-s', 'GET', '/v1/workspaces?limit=100')).json.workspaces.length, before, 'nothing was created');
  t.equal((await call('team-b', 'POST', '/v1/workspaces', { files: { 'f.txt': 'b' } })).status, 201, 'another tenant still creates workspaces');
  t.equal((await call('team-s', 'DELETE', `/v1/workspaces/${made[0]}`)).status, 204);
  t.equal((await call('team-s', 'POST', '/v1/workspaces', { files: { 'f.txt': 'again' } })).status, 201, 'after a delete there is room again');
});

// Last: it leaves this client address limited.
t.test('failed authentication per client address: past the bound every request gets 429', async (t) => {
  const bad = 'ssk_notakeynotakeynotakeynotakey00';
  for (let i = 0; i < 3; i++) t.equal((await call(bad, 'GET', '/v1/tasks')).status, 401, `bad key ${i + 1} of 3: 401`);
  const limited = await call(bad, 'GET', '/v1/tasks');
  t.equal(limited.status, 429, 'the fourth failure in a minute is refused before its key is looked at');
  t.equal(limited.json.error.code, 'RATE_LIMITED');
  t.ok(Number(limited.headers.get('retry-after')) >= 1, 'with Retry-After');
  const good = await call('team-b', 'GET', '/v1/tasks');
  t.equal(good.status, 429, 'a valid key from the same address is limited too (the address is)');
  t.equal((await fetch(`${srv.url}/healthz`)).status, 200, '/healthz stays open');
});
