import t from 'tap';
import { multipartBody, tar } from '../helpers/archives.js';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { sleep } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';

/**
 * Workspaces made for a single task (none given, inline files, a multipart archive) expire
 * workspaces.ephemeralTtlSeconds (4 s here) after their task ends; explicit ones keep the normal
 * TTL (1 h here); a later task that names an ephemeral workspace by id makes it regular.
 */
const EPHEMERAL_MS = 4000;
const srv = await startTestServer({ workspaces: { ttlSeconds: 3600, ephemeralTtlSeconds: EPHEMERAL_MS / 1000, sweepIntervalSeconds: 1 } });
t.teardown(() => srv.close());

const view = async (id: string) => (await api(srv.url, 'GET', `/v1/workspaces/${id}`)).json;
async function goneWithin(id: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if ((await api(srv.url, 'GET', `/v1/workspaces/${id}`)).status === 404) return true;
    await sleep(200);
  }
  return false;
}

t.test('a task without a workspace: ephemeral, expires ephemeralTtlSeconds after the task ended, then swept', async (t) => {
  const explicit = (await api(srv.url, 'POST', '/v1/workspaces', { files: { 'keep.txt': 'x' } })).json;
  t.equal(explicit.ephemeral, false, 'POST /v1/workspaces makes a regular workspace');
  t.equal(Date.parse(explicit.expiresAt) - Date.parse(explicit.lastUsedAt), 3600_000, 'with the normal TTL');

  const run = await runTask(srv.url, 'echo hi > out.txt');
  t.equal(run.task.status, 'succeeded');
  const w = await view(run.task.workspaceId);
  t.equal(w.ephemeral, true);
  const afterEnd = Date.parse(w.expiresAt) - Date.parse(run.task.finishedAt);
  t.ok(Math.abs(afterEnd - EPHEMERAL_MS) < 1000, `expiresAt is ephemeralTtlSeconds after the task ended (${afterEnd} ms)`);
  t.ok(await goneWithin(run.task.workspaceId, 15_000), 'the sweep removed it');
  t.equal((await api(srv.url, 'GET', `/v1/workspaces/${explicit.id}`)).status, 200, 'the explicit workspace is kept');
});

t.test('inline files and a multipart archive make ephemeral workspaces too', async (t) => {
  const inline = await runTask(srv.url, 'cat a.txt', { workspace: { files: { 'a.txt': 'a' } } });
  t.equal(inline.stdout, 'a');
  t.equal((await view(inline.task.workspaceId)).ephemeral, true, 'inline files');
  const body = Buffer.from(multipartBody({ command: 'cat b.txt' }, tar([{ name: 'b.txt', data: 'b' }])), 'latin1');
  const mp = await api(srv.url, 'POST', '/v1/tasks', body, { 'content-type': 'multipart/form-data; boundary=sbxboundary' });
  t.equal(mp.status, 202, mp.text);
  const task = await waitDone(srv.url, mp.json.id);
  t.equal((await view(task.workspaceId)).ephemeral, true, 'multipart archive');
  t.ok(await goneWithin(inline.task.workspaceId, 15_000), 'inline: swept');
  t.ok(await goneWithin(task.workspaceId, 15_000), 'multipart: swept');
});

t.test('a later task that names an ephemeral workspace makes it regular', async (t) => {
  const first = await runTask(srv.url, 'echo 1 > n.txt');
  const id = first.task.workspaceId as string;
  // Named right away, well before the 4 s expire.
  const second = await submit(srv.url, { command: 'cat n.txt', workspace: { id } });
  const done = await waitDone(srv.url, second.id);
  t.equal(done.status, 'succeeded');
  const w = await view(id);
  t.equal(w.ephemeral, false);
  t.equal(Date.parse(w.expiresAt) - Date.parse(w.lastUsedAt), 3600_000, 'the normal TTL');
  await sleep(EPHEMERAL_MS + 2000);
  t.equal((await api(srv.url, 'GET', `/v1/workspaces/${id}`)).status, 200, 'kept past the ephemeral TTL');
});
