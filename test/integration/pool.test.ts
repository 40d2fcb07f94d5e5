/**
 * The warm path: tasks handed to pre-started sandboxes see their own workspace (mounted into the
 * running container through the slot's propagation), never share a container, and a crash
 * leaves no pre-started container behind while a task one was running is re-attached.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Docker from 'dockerode';
import t from 'tap';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { leftContainers, sleep } from '../helpers/host.js';
import { keptDataDir, startServerProcess, startTestServer } from '../helpers/server.js';
import { mountsUnder } from '../../src/workspace/storage.js';

const socketPath = process.env.SANDBOXSHIFT_TEST_SOCKET!;
const docker = new Docker({ socketPath });
const srv = await startTestServer({ pool: { size: 2 } });
t.teardown(() => srv.close());

/** Runs a task once the pool is full, and checks that it was handed to a pre-started sandbox. */
async function warm(t: Tap.Test, command: string, extra: Record<string, unknown> = {}) {
  t.ok(await srv.services.pool.ready(60_000), 'the pool is full');
  const before = srv.services.engine.handoffs;
  const r = await runTask(srv.url, command, extra);
  t.equal(srv.services.engine.handoffs, before + 1, 'handed to a pre-started sandbox');
  return r;
}

/** The container id a task sees in its own cgroup path. */
const ownContainer = 'sed -n "s/.*libpod-\\([0-9a-f]\\{64\\}\\).*/\\1/p" /proc/self/cgroup | head -n 1';

t.test('a task with files runs in its own workspace: cwd, contents and writes are its own, not the slot', async (t) => {
  const r = await warm(t, 'pwd; ls -A; cat a.txt; echo written > b.txt; stat -c %d . /workspace; grep -c " /workspace " /proc/self/mountinfo', {
    workspace: { files: { 'a.txt': 'mine\n' } },
  });
  t.match(r.task, { status: 'succeeded' });
  const [pwd, ls1, ls2, content, dev1, dev2] = r.stdout.split('\n');
  t.equal(pwd, '/workspace');
  t.same([ls1, ls2].sort(), ['.home', 'a.txt'], 'only the task files (no spare, no slot directory)');
  t.equal(content, 'mine');
  t.equal(dev1, dev2, 'the working directory is the workspace mount');
  const again = await runTask(srv.url, 'cat b.txt', { workspace: { id: r.task.workspaceId } });
  t.equal(again.stdout, 'written\n', 'what the task wrote is in its workspace');
});

t.test('a task without a workspace gets the slot workspace, empty and its own', async (t) => {
  const r = await warm(t, 'ls -A; echo x > f && echo wrote; grep " /workspace " /proc/self/mountinfo | tail -n 1');
  t.match(r.stdout, /^\.home\nwrote\n/);
  t.match(r.stdout, /\/workspace rw,nosuid,nodev/, 'mounted nosuid,nodev');
  const ws = (await api(srv.url, 'GET', `/v1/workspaces/${r.task.workspaceId}`)).json;
  t.match(ws, { id: r.task.workspaceId, ephemeral: true }, 'recorded as the task workspace');
});

t.test('a read-only workspace is read-only in a pre-started sandbox too', async (t) => {
  const created = await api(srv.url, 'POST', '/v1/workspaces', { files: { 'a.txt': 'a\n' } });
  const id = created.json.id as string;
  const r = await warm(t, 'cat a.txt; grep " /workspace " /proc/self/mountinfo | tail -n 1; echo x > b.txt', { workspace: { id, readonly: true } });
  t.match(r.task, { status: 'failed', workspaceReadonly: true });
  t.match(r.stdout, /^a\n.*\/workspace ro,nosuid,nodev/);
  t.match(r.stderr, /Read-only file system/);
  const check = await runTask(srv.url, 'ls', { workspace: { id } });
  t.notMatch(check.stdout, /b\.txt/, 'nothing was written');
});

t.test('a pre-started container is never reused: one container per task, removed after it', async (t) => {
  // A second task while the first still runs: it must not be handed the first one's container.
  t.ok(await srv.services.pool.ready(60_000));
  const first = await submit(srv.url, { command: `${ownContainer}; sleep 3` });
  for (let i = 0; i < 100 && !(await api(srv.url, 'GET', `/v1/tasks/${first.id}/logs`)).text; i++) await sleep(100);
  const second = await warm(t, ownContainer);
  await waitDone(srv.url, first.id);
  const firstContainer = (await api(srv.url, 'GET', `/v1/tasks/${first.id}/logs?stream=stdout`)).text;
  t.match(firstContainer, /^[0-9a-f]{64}\n$/);
  t.not(second.stdout, firstContainer, 'the second task ran in a container of its own');
  const seen = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const r = await warm(t, `${ownContainer}; ls /tmp; touch /tmp/left-by-${i}`);
    const [container, ...tmp] = r.stdout.trim().split('\n');
    t.match(container, /^[0-9a-f]{64}$/);
    t.notOk(seen.has(container!), 'a container no task had before');
    seen.add(container!);
    t.same(tmp.filter(Boolean), [], 'nothing an earlier task left');
    t.same(await leftContainers(socketPath, r.id), [], 'its container is gone after it');
    // Removed in the background after the exit was reported.
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      gone = await docker.getContainer(container!).inspect().then(() => false, () => true);
      if (!gone) await sleep(100);
    }
    t.ok(gone, 'removed from the engine');
  }
});

t.test('a task with an allowlist, or a shape no pool holds, starts cold', async (t) => {
  t.ok(await srv.services.pool.ready(60_000));
  const before = srv.services.engine.handoffs;
  const r = await runTask(srv.url, 'echo cold', { resources: { pids: 200 } });
  t.equal(r.stdout, 'cold\n');
  t.equal(srv.services.engine.handoffs, before, 'not handed to a pre-started sandbox');
});

t.test('kill -9 with a pool: a task running in a pre-started container is re-attached; no idle one is left', async (t) => {
  const dataDir = keptDataDir(t, 'sbx-pool-crash-');
  const first = await startServerProcess({ dataDir, pool: { size: 2 } });
  t.teardown(async () => {
    first.kill('SIGKILL');
    await first.exited;
  });
  const serverId = (new Database(join(dataDir, 'sandboxshift.db'), { readonly: true }).prepare("SELECT value FROM meta WHERE key = 'serverId'").get() as { value: string }).value;
  const pooled = async () => docker.listContainers({ all: true, filters: { label: [`io.sandboxshift.server=${serverId}`, 'io.sandboxshift.slot'] } });
  for (let i = 0; i < 300 && (await pooled()).length < 2; i++) await sleep(100);
  t.equal((await pooled()).length, 2, 'two pre-started containers');
  // Long enough for the refill to start a new member while the task still holds its own.
  const { id } = await submit(first.url, { command: 'echo before; sleep 10; echo after; exit 3' });
  for (let i = 0; i < 100 && !(await api(first.url, 'GET', `/v1/tasks/${id}/logs`)).text.includes('before'); i++) await sleep(100);
  for (let i = 0; i < 600 && (await pooled()).length < 3; i++) await sleep(100);
  const beforeCrash = (await pooled()).map((c) => c.Id);
  t.equal(beforeCrash.length, 3, 'the task took a pre-started container and the pool refilled');
  first.kill('SIGKILL');
  await first.exited;

  const second = await startServerProcess({ dataDir, pool: { size: 0 } });
  t.teardown(async () => {
    second.kill('SIGKILL');
    await second.exited;
  });
  const done = await waitDone(second.url, id, 60_000);
  t.match(done, { status: 'failed', exitCode: 3, reason: null }, 're-attached: the real exit code');
  t.equal((await api(second.url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`)).text, 'before\nafter\n');
  for (let i = 0; i < 100 && (await pooled()).length > 0; i++) await sleep(100);
  t.same(await pooled(), [], 'no pre-started container of the crashed server is left, idle or used');
  t.same(mountsUnder(join(dataDir, 'pool', 'slots')).filter((p) => p !== join(dataDir, 'pool', 'slots')), [], 'no slot is mounted');
  const images = existsSync(join(dataDir, 'workspaces')) ? readdirSync(join(dataDir, 'workspaces')).filter((n) => n.endsWith('.img')) : [];
  const recorded = (await api(second.url, 'GET', '/v1/workspaces?limit=100')).json.workspaces.map((w: { id: string }) => `${w.id}.img`);
  t.same(images.filter((n) => !recorded.includes(n)), [], 'no spare workspace of the crashed server is left');
});
