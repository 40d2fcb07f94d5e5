import t from 'tap';
import WebSocket from 'ws';
import { hashKey } from '../../src/auth/keys.js';
import { multipartBody, tar } from '../helpers/archives.js';
import { api } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

// Tenant scoping on a real server with real Podman: tenant A's key never reaches tenant B's
// tasks or workspaces (404 exactly as for ids that do not exist), lists hold only the caller's
// own, and an admin key sees all and filters by ?tenant=.

const KEY_A = 'ssk_tenantAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const KEY_B = 'ssk_tenantBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB';
const KEY_ADMIN = 'ssk_adminXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX';

const keys = [
  { id: 'ka', tenant: 'team-a', role: 'user', sha256: hashKey(KEY_A) },
  { id: 'kb', tenant: 'team-b', role: 'user', sha256: hashKey(KEY_B) },
  { id: 'root', tenant: 'ops', role: 'admin', sha256: hashKey(KEY_ADMIN) },
];

async function call(base: string, key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  return api(base, method, path, body, { authorization: `Bearer ${key}`, ...headers });
}

/** The status of a WebSocket upgrade the server refused (or 101 when it accepted it). */
function upgradeStatus(wsBase: string, key: string, id: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/v1/tasks/${id}/stream`, { headers: { authorization: `Bearer ${key}` } });
    ws.on('open', () => {
      ws.close();
      resolve({ status: 101, body: '' });
    });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('error', (err) => reject(err));
  });
}

async function waitStatus(base: string, key: string, id: string, want: string[], ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    const r = await call(base, key, 'GET', `/v1/tasks/${id}`);
    if (want.includes(r.json?.status)) return r.json;
    if (Date.now() > end) throw new Error(`task ${id} stayed ${r.json?.status}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

t.test('tenant A cannot see, stream, cancel, list or delete tenant B\'s work; admin can', async (t) => {
  const srv = await startTestServer({ auth: { keys } });
  t.teardown(() => srv.close());
  const base = srv.url;

  // Tenant B: a workspace of its own, a finished task on it, and a task that keeps running.
  const ws = await call(base, KEY_B, 'POST', '/v1/workspaces', { files: { 'data.txt': 'b-secret\n' } });
  t.equal(ws.status, 201, ws.text);
  t.equal(ws.json.tenant, 'team-b', 'the workspace carries the creating key\'s tenant');
  const wsB = ws.json.id as string;
  const done = await call(base, KEY_B, 'POST', '/v1/tasks', { command: 'cat data.txt; echo out-b', workspace: { id: wsB } });
  t.equal(done.status, 202, done.text);
  const doneB = done.json.id as string;
  const finished = await waitStatus(base, KEY_B, doneB, ['succeeded', 'failed', 'error']);
  t.equal(finished.status, 'succeeded');
  t.equal(finished.tenant, 'team-b', 'the task carries its tenant');
  t.equal(finished.keyId, 'kb', 'and the id of the key that submitted it');
  const live = await call(base, KEY_B, 'POST', '/v1/tasks', { command: 'echo started; sleep 60', stdin: true, timeoutSeconds: 90 });
  t.equal(live.status, 202, live.text);
  const liveB = live.json.id as string;
  await waitStatus(base, KEY_B, liveB, ['running']);

  // What an id that does not exist answers: tenant A must get the very same for B's ids.
  const missingTask = await call(base, KEY_A, 'GET', '/v1/tasks/tsk_doesnotexist000000000');
  t.equal(missingTask.status, 404);
  const missingWs = await call(base, KEY_A, 'GET', '/v1/workspaces/ws_doesnotexist0000000000');
  const sameAsMissing = (r: { status: number; json: any }, code: 'TASK_NOT_FOUND' | 'WORKSPACE_NOT_FOUND', id: string, what: string) => {
    t.equal(r.status, 404, `${what}: 404`);
    const like = code === 'TASK_NOT_FOUND' ? missingTask.json : missingWs.json;
    t.same(r.json, { error: { ...like.error, details: { id } } }, `${what}: the body of an id that does not exist`);
  };

  for (const id of [doneB, liveB]) {
    sameAsMissing(await call(base, KEY_A, 'GET', `/v1/tasks/${id}`), 'TASK_NOT_FOUND', id, `GET task ${id}`);
    sameAsMissing(await call(base, KEY_A, 'GET', `/v1/tasks/${id}/logs`), 'TASK_NOT_FOUND', id, 'logs (text)');
    sameAsMissing(await call(base, KEY_A, 'GET', `/v1/tasks/${id}/logs?stream=stdout`), 'TASK_NOT_FOUND', id, 'logs ?stream=stdout');
    sameAsMissing(
      await call(base, KEY_A, 'GET', `/v1/tasks/${id}/logs?follow=true`, undefined, { accept: 'text/event-stream' }),
      'TASK_NOT_FOUND',
      id,
      'SSE logs',
    );
    sameAsMissing(await call(base, KEY_A, 'GET', `/v1/tasks/${id}/egress`), 'TASK_NOT_FOUND', id, 'egress report');
    const up = await upgradeStatus(srv.wsUrl, KEY_A, id);
    t.equal(up.status, 404, 'WebSocket stream: refused with 404 before the upgrade');
    t.same(JSON.parse(up.body), { error: { ...missingTask.json.error, details: { id } } }, 'WebSocket stream: the body of an unknown id');
  }
  sameAsMissing(await call(base, KEY_A, 'POST', `/v1/tasks/${liveB}/cancel`), 'TASK_NOT_FOUND', liveB, 'cancel');
  t.equal((await call(base, KEY_B, 'GET', `/v1/tasks/${liveB}`)).json.status, 'running', "B's task still runs after A's cancel");

  sameAsMissing(await call(base, KEY_A, 'GET', `/v1/workspaces/${wsB}`), 'WORKSPACE_NOT_FOUND', wsB, 'GET workspace');
  sameAsMissing(await call(base, KEY_A, 'GET', `/v1/workspaces/${wsB}/archive`), 'WORKSPACE_NOT_FOUND', wsB, 'workspace archive');
  sameAsMissing(await call(base, KEY_A, 'GET', `/v1/workspaces/${wsB}/files/data.txt`), 'WORKSPACE_NOT_FOUND', wsB, 'workspace file');
  sameAsMissing(await call(base, KEY_A, 'DELETE', `/v1/workspaces/${wsB}`), 'WORKSPACE_NOT_FOUND', wsB, 'DELETE workspace');
  const onForeign = await call(base, KEY_A, 'POST', '/v1/tasks', { command: 'cat data.txt', workspace: { id: wsB } });
  sameAsMissing(onForeign, 'WORKSPACE_NOT_FOUND', wsB, "a task on B's workspace");
  t.equal((await call(base, KEY_B, 'GET', `/v1/workspaces/${wsB}`)).status, 200, "B's workspace is still there");

  // Intake and multipart submission record the caller's tenant too.
  const up = await fetch(`${base}/v1/workspaces`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'application/x-tar' },
    body: tar([{ name: 'a.txt', data: 'a' }]),
  });
  const upJson = (await up.json()) as { id: string; tenant: string };
  t.equal(up.status, 201);
  t.equal(upJson.tenant, 'team-a', 'an uploaded archive is the uploading tenant\'s');
  const mp = await fetch(`${base}/v1/tasks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY_A}`, 'content-type': 'multipart/form-data; boundary=sbxboundary' },
    body: Buffer.from(multipartBody({ command: 'cat a.txt' }, tar([{ name: 'a.txt', data: 'mp' }])), 'latin1'),
  });
  const mpJson = (await mp.json()) as { id: string; workspaceId: string };
  t.equal(mp.status, 202, JSON.stringify(mpJson));
  const mpTask = await waitStatus(base, KEY_A, mpJson.id, ['succeeded', 'failed', 'error']);
  t.match(mpTask, { tenant: 'team-a', keyId: 'ka' }, 'a multipart task carries the tenant and key');
  t.equal((await call(base, KEY_A, 'GET', `/v1/workspaces/${mpJson.workspaceId}`)).json.tenant, 'team-a', 'and so does its workspace');
  t.equal((await call(base, KEY_B, 'GET', `/v1/workspaces/${upJson.id}`)).status, 404, "B cannot see A's uploaded workspace");
  t.equal((await call(base, KEY_B, 'GET', `/v1/tasks/${mpJson.id}`)).status, 404, "nor A's multipart task");

  // Tenant A's own work, and the lists.
  const mine = await call(base, KEY_A, 'POST', '/v1/tasks', { command: 'echo a' });
  t.equal(mine.status, 202, mine.text);
  const aTasks = await call(base, KEY_A, 'GET', '/v1/tasks?limit=100');
  t.same(aTasks.json.tasks.map((x: { id: string }) => x.id).sort(), [mine.json.id, mpJson.id].sort(), "A's list holds only A's tasks");
  const aWs = await call(base, KEY_A, 'GET', '/v1/workspaces?limit=100');
  t.same(aWs.json.workspaces.map((w: { tenant: string }) => w.tenant), ['team-a', 'team-a', 'team-a'], "A's workspace list holds only A's three");
  const bTasks = await call(base, KEY_B, 'GET', '/v1/tasks?limit=100');
  t.same(bTasks.json.tasks.map((x: { id: string }) => x.id).sort(), [doneB, liveB].sort(), "B's list holds only B's tasks");
  const sneaky = await call(base, KEY_A, 'GET', '/v1/tasks?tenant=team-b');
  t.equal(sneaky.status, 403, 'a user key filtering by another tenant is refused');
  t.equal(sneaky.json.error.code, 'TENANT_FORBIDDEN');
  t.equal((await call(base, KEY_A, 'GET', '/v1/workspaces?tenant=team-b')).json.error.code, 'TENANT_FORBIDDEN', 'workspaces too');
  t.equal((await call(base, KEY_A, 'GET', '/v1/tasks?tenant=team-a')).status, 200, 'naming its own tenant is fine');

  // Admin: sees everything, filters by tenant, reads B's task and stream, cancels and deletes.
  const all = await call(base, KEY_ADMIN, 'GET', '/v1/tasks?limit=100');
  t.same(all.json.tasks.map((x: { id: string }) => x.id).sort(), [doneB, liveB, mine.json.id, mpJson.id].sort(), 'admin lists every tenant');
  const onlyB = await call(base, KEY_ADMIN, 'GET', '/v1/tasks?limit=100&tenant=team-b');
  t.same(onlyB.json.tasks.map((x: { id: string }) => x.id).sort(), [doneB, liveB].sort(), 'admin ?tenant=team-b');
  const wsOnlyB = await call(base, KEY_ADMIN, 'GET', '/v1/workspaces?limit=100&tenant=team-b');
  t.ok(wsOnlyB.json.workspaces.length >= 2 && wsOnlyB.json.workspaces.every((w: { tenant: string }) => w.tenant === 'team-b'), 'admin workspaces ?tenant=team-b');
  t.ok(wsOnlyB.json.workspaces.some((w: { id: string }) => w.id === wsB));
  t.equal((await call(base, KEY_ADMIN, 'GET', `/v1/tasks/${doneB}`)).status, 200, "admin reads B's task");
  t.equal((await call(base, KEY_ADMIN, 'GET', `/v1/tasks/${doneB}/logs?stream=stdout`)).text, 'b-secret\nout-b\n', "admin reads B's output");
  t.equal((await upgradeStatus(srv.wsUrl, KEY_ADMIN, liveB)).status, 101, "admin streams B's task");
  t.equal((await call(base, KEY_ADMIN, 'GET', `/v1/workspaces/${wsB}/files/data.txt`)).text, 'b-secret\n', "admin reads B's workspace");
  t.equal((await call(base, KEY_ADMIN, 'POST', `/v1/tasks/${liveB}/cancel`)).status, 202, "admin cancels B's task");
  t.equal((await waitStatus(base, KEY_B, liveB, ['cancelled'])).status, 'cancelled');
  const adminOnB = await call(base, KEY_ADMIN, 'POST', '/v1/tasks', { command: 'true', workspace: { id: wsB } });
  t.equal(adminOnB.json?.error?.code, 'WORKSPACE_NOT_FOUND', "even an admin's task may use only its own tenant's workspaces");
  const del = await call(base, KEY_ADMIN, 'DELETE', `/v1/workspaces/${wsB}`);
  t.equal(del.status, 204, `admin deletes B's workspace: ${del.text}`);
  t.equal((await call(base, KEY_B, 'GET', `/v1/workspaces/${wsB}`)).status, 404, 'gone for B too');
});
