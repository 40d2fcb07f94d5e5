import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { sleep } from '../helpers/host.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { mountsUnder, unmountAllUnder } from '../../src/workspace/storage.js';

const newWorkspace = async (srv: TestServer, files: Record<string, string> = { 'a.txt': 'a\n' }) => {
  const r = await api(srv.url, 'POST', '/v1/workspaces', { files });
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${r.text}`);
  return r.json.id as string;
};
const waitStatus = async (srv: TestServer, id: string, status: string) => {
  for (let i = 0; i < 200 && (await api(srv.url, 'GET', `/v1/tasks/${id}`)).json.status !== status; i++) await sleep(100);
};

t.test('delete: refused while a task runs or waits on the workspace, then removes everything', async (t) => {
  const srv = await startTestServer({ queue: { concurrency: 1 } });
  t.teardown(() => srv.close());
  const busy = await newWorkspace(srv);
  const waiting = await newWorkspace(srv);
  const running = await submit(srv.url, { command: 'sleep 60', workspace: { id: busy } });
  await waitStatus(srv, running.id, 'running');
  const queued = await submit(srv.url, { command: 'true', workspace: { id: waiting } });
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${queued.id}`)).json.status, 'queued');

  const d1 = await api(srv.url, 'DELETE', `/v1/workspaces/${busy}`);
  t.match([d1.status, d1.json?.error.code], [409, 'WORKSPACE_BUSY'], 'a running task holds its workspace');
  const d2 = await api(srv.url, 'DELETE', `/v1/workspaces/${waiting}`);
  t.match([d2.status, d2.json?.error.code], [409, 'WORKSPACE_BUSY'], 'so does a queued one');
  t.equal((await api(srv.url, 'GET', `/v1/workspaces/${busy}`)).status, 200, 'a refused delete changes nothing');

  await api(srv.url, 'POST', `/v1/tasks/${running.id}/cancel`);
  await waitDone(srv.url, running.id);
  await waitDone(srv.url, queued.id);
  const d3 = await api(srv.url, 'DELETE', `/v1/workspaces/${busy}`);
  t.equal(d3.status, 204);
  t.equal(d3.text, '');
  t.match((await api(srv.url, 'GET', `/v1/workspaces/${busy}`)).json, { error: { code: 'WORKSPACE_NOT_FOUND' } });
  t.match((await api(srv.url, 'DELETE', `/v1/workspaces/${busy}`)).json, { error: { code: 'WORKSPACE_NOT_FOUND' } }, 'a second delete is 404');
  t.notOk(existsSync(join(srv.dataDir, 'workspaces', `${busy}.img`)), 'the image file is gone');
  t.notOk(existsSync(join(srv.dataDir, 'workspaces', busy)), 'the mount point is gone');
  const later = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', workspace: { id: busy } });
  t.match([later.status, later.json?.error.code], [404, 'WORKSPACE_NOT_FOUND'], 'no task can use it afterwards');
  t.equal((await api(srv.url, 'DELETE', `/v1/workspaces/${waiting}`)).status, 204);
  t.same(mountsUnder(srv.dataDir), [], 'nothing mounted');
});

t.test('tasks change a workspace in place, one at a time, without blocking other workspaces', async (t) => {
  const srv = await startTestServer({ queue: { concurrency: 2 } });
  t.teardown(() => srv.close());
  const shared = await newWorkspace(srv);
  const other = await newWorkspace(srv);
  const first = await submit(srv.url, { command: 'echo one >> log; sleep 2; echo one-done >> log', workspace: { id: shared } });
  const second = await submit(srv.url, { command: 'echo two >> log; cat log', workspace: { id: shared } });
  const third = await submit(srv.url, { command: 'echo other', workspace: { id: other } });
  const t3 = await waitDone(srv.url, third.id);
  const t1 = await waitDone(srv.url, first.id);
  const t2 = await waitDone(srv.url, second.id);
  t.match([t1.status, t2.status, t3.status], ['succeeded', 'succeeded', 'succeeded']);
  t.ok(Date.parse(t2.startedAt) >= Date.parse(t1.finishedAt), 'the second task on the workspace started after the first finished');
  t.ok(Date.parse(t3.startedAt) < Date.parse(t1.finishedAt), 'a task on another workspace ran meanwhile');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${second.id}/logs?stream=stdout`)).text, 'one\none-done\ntwo\n', 'the second task saw the first one\'s changes');
  const home = await runTask(srv.url, 'echo "$HOME"; echo persisted > "$HOME/state"', { workspace: { id: shared } });
  t.equal(home.stdout, '/workspace/.home\n');
  const again = await runTask(srv.url, 'cat "$HOME/state"', { workspace: { id: shared } });
  t.equal(again.stdout, 'persisted\n', 'HOME persists with the workspace');
});

t.test('readonly: true mounts the workspace read-only (EROFS)', async (t) => {
  const srv = await startTestServer();
  t.teardown(() => srv.close());
  const id = await newWorkspace(srv);
  const r = await runTask(srv.url, 'cat a.txt; echo x > b.txt', { workspace: { id, readonly: true } });
  t.match(r.task, { status: 'failed', workspaceReadonly: true, reason: null });
  t.equal(r.stdout, 'a\n', 'reading works');
  t.match(r.stderr, /Read-only file system/);
  const check = await runTask(srv.url, 'ls', { workspace: { id } });
  t.notMatch(check.stdout, /b\.txt/, 'nothing was written');
});

t.test('TTL: unused workspaces are swept; one in use is kept', async (t) => {
  const srv = await startTestServer({ workspaces: { ttlSeconds: 2, sweepIntervalSeconds: 1 } });
  t.teardown(() => srv.close());
  const idle = await newWorkspace(srv);
  const used = await newWorkspace(srv);
  const ws = (await api(srv.url, 'GET', `/v1/workspaces/${idle}`)).json;
  t.equal(Date.parse(ws.expiresAt) - Date.parse(ws.lastUsedAt), 2000, 'expiresAt is lastUsedAt + ttl');
  const long = await submit(srv.url, { command: 'sleep 6', workspace: { id: used } });
  let gone = false;
  for (let i = 0; i < 100 && !gone; i++) {
    await sleep(200);
    gone = (await api(srv.url, 'GET', `/v1/workspaces/${idle}`)).status === 404;
  }
  t.ok(gone, 'the idle workspace was removed after its TTL');
  // The record goes first (so nothing new can use it), the filesystem image right after it.
  for (let i = 0; i < 50 && existsSync(join(srv.dataDir, 'workspaces', `${idle}.img`)); i++) await sleep(100);
  t.notOk(existsSync(join(srv.dataDir, 'workspaces', `${idle}.img`)), 'with its image');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${long.id}`)).json.status, 'running');
  t.equal((await api(srv.url, 'GET', `/v1/workspaces/${used}`)).status, 200, 'a workspace with a running task is kept past its TTL');
  t.match(await waitDone(srv.url, long.id), { status: 'succeeded' });
  const kept = (await api(srv.url, 'GET', `/v1/workspaces/${used}`)).json;
  t.ok(Date.parse(kept.lastUsedAt) >= Date.parse(ws.lastUsedAt) + 5000, 'a finished task marks the workspace used');
  for (let i = 0; i < 100 && (await api(srv.url, 'GET', `/v1/workspaces/${used}`)).status !== 404; i++) await sleep(200);
  t.equal((await api(srv.url, 'GET', `/v1/workspaces/${used}`)).status, 404, 'and it expires once idle');
  t.same(mountsUnder(srv.dataDir), []);
});

t.test('start-up undoes mounts a crashed server left behind', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'sbx-ws-crash-'));
  t.teardown(async () => {
    await unmountAllUnder(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const first = await startTestServer({ dataDir });
  const id = await newWorkspace(first, { 'kept.txt': 'kept\n' });
  await first.close();
  // What a crash mid-task and mid-read-back would leave: the workspace and a view still mounted.
  const wsDir = join(dataDir, 'workspaces', id);
  execFileSync('mount', ['-o', 'loop,nosuid,nodev', join(dataDir, 'workspaces', `${id}.img`), wsDir]);
  mkdirSync(join(dataDir, 'views', 'stale'), { recursive: true });
  execFileSync('mount', ['--bind', wsDir, join(dataDir, 'views', 'stale')]);
  t.equal(mountsUnder(dataDir).length, 2, 'two stale mounts before the restart');
  const second = await startTestServer({ dataDir });
  t.teardown(() => second.close());
  t.same(mountsUnder(dataDir), [], 'start-up unmounted them');
  t.notOk(existsSync(join(dataDir, 'views', 'stale')), 'and removed the stale view');
  const r = await runTask(second.url, 'cat kept.txt', { workspace: { id } });
  t.equal(r.stdout, 'kept\n', 'the workspace itself is intact');
});
