/**
 * The warm path: tasks handed to pre-started sandboxes see their own workspace (mounted into the
 * running container, in a user namespace of its own, through the slot's propagation), run as the
 * member's own host UID, never share a container, and a crash leaves no pre-started container
 * behind while a task one was running is re-attached.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Docker from 'dockerode';
import t from 'tap';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { httpUpstream } from '../helpers/egress.js';
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

t.test('a task with an allowlist runs warm: its own proxy socket, mounted read-only, gone with the task', async (t) => {
  const web = await httpUpstream();
  const esrv = await startTestServer({
    pool: { size: 1 },
    egress: { testHosts: { 'ok.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [web.port], ceiling: ['ok.test'] },
  });
  t.teardown(async () => {
    await esrv.close();
    await web.close();
  });
  t.ok(await esrv.services.pool.ready(60_000), 'the pool is full');
  const before = esrv.services.engine.handoffs;
  const script = [
    `python3 -c "import urllib.request as u; print(u.urlopen('http://ok.test:${web.port}/warm').read().decode(), end='')"`,
    'ls -ld /run/sandboxshift/egress | cut -c1-10',
    'touch /run/sandboxshift/egress/x 2>/dev/null && echo writable || echo read-only',
    'chmod 700 /run/sandboxshift/egress 2>/dev/null && echo chmod || echo no-chmod',
  ].join('; ');
  const r = await runTask(esrv.url, script, { network: { allow: ['ok.test'] } });
  t.equal(esrv.services.engine.handoffs, before + 1, 'handed to a pre-started sandbox');
  t.equal(r.task.status, 'succeeded', r.stderr);
  t.equal(r.stdout, `hello /warm\ndr-x------\nread-only\nno-chmod\n`, 'through the proxy; the socket directory cannot be changed');
  t.match(web.seen, [/^GET \/warm host=ok.test/], 'the upstream saw the request');
  const e = (await api(esrv.url, 'GET', `/v1/tasks/${r.id}/egress`)).json;
  t.match(e.decisions, [{ host: 'ok.test', port: web.port, allowed: true }], 'decided by the task’s own listener');
  // A task without an allowlist in the next pre-started sandbox: no socket in the directory.
  t.ok(await esrv.services.pool.ready(60_000));
  const plain = await runTask(esrv.url, 'ls -A /run/sandboxshift/egress | wc -l; echo $HTTP_PROXY.');
  t.equal(plain.stdout, '0\n.\n', 'an empty egress directory, no proxy variables');
  // Idle members keep their empty tmpfs there; a task's socket directory on top goes with its slot.
  const slots = join(esrv.services.config.dataDir, 'pool', 'slots');
  const stacked = () => {
    const points = mountsUnder(slots).filter((p) => p.endsWith('.egress'));
    return points.filter((p, i) => points.indexOf(p) !== i);
  };
  for (let i = 0; i < 100 && stacked().length > 0; i++) await sleep(100);
  t.same(stacked(), [], 'no task socket directory left on a slot');
});

t.test('a shape no pool holds starts cold', async (t) => {
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
  const uidLabels = new Set((await pooled()).map((c) => c.Labels['io.sandboxshift.host-uid']));
  t.equal(uidLabels.size, 3, 'each pre-started container has a host UID of its own (its label)');
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
  t.same(mountsUnder(join(dataDir, 'mapped')), [], 'no idmapped workspace view is left');
  const images = existsSync(join(dataDir, 'workspaces')) ? readdirSync(join(dataDir, 'workspaces')).filter((n) => n.endsWith('.img')) : [];
  const recorded = (await api(second.url, 'GET', '/v1/workspaces?limit=100')).json.workspaces.map((w: { id: string }) => `${w.id}.img`);
  t.same(images.filter((n) => !recorded.includes(n)), [], 'no spare workspace of the crashed server is left');
});

/** The host UID labels of this server's idle or running pre-started containers. */
async function memberUids(): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`io.sandboxshift.server=${srv.services.serverId}`, 'io.sandboxshift.slot'] } });
  return list.map((c) => c.Labels['io.sandboxshift.host-uid'] ?? '');
}

/** The spare workspaces of the members ready now (a new member may be given a freed host UID). */
const readySpares = () =>
  new Set([...(srv.services.pool as unknown as { idle: Map<string, { spare: { id: string } }[]> }).idle.values()].flat().map((m) => m.spare.id));

/** Mounted idmapped views for host UID `uid`, but those of the spares of members ready now. */
async function viewsOf(uid: string): Promise<string[]> {
  const of = () => {
    const spares = readySpares();
    return mountsUnder(join(srv.dataDir, 'mapped')).filter((p) => p.endsWith(`.${uid}`) && !spares.has(p.split('/').pop()!.slice(0, -`.${uid}`.length)));
  };
  for (let i = 0; i < 100 && of().length > 0; i++) await sleep(100);
  return of();
}

const HOST_UID = 'read inside host size < /proc/self/uid_map; echo "$(id -u) $((host + 65532)) $inside $size"';

t.test("a pre-started sandbox has a host UID of its own; its task runs as it, in its workspace, and writes files 65532 owns on disk", async (t) => {
  t.ok(await srv.services.pool.ready(60_000));
  const uids = await memberUids();
  t.equal(uids.length, 2);
  t.equal(new Set(uids).size, 2, 'two members, two host UIDs');
  for (const u of uids) t.ok(Number(u) >= 0x70000000, `member host UID ${u} is in the server's range`);
  const r = await warm(t, `${HOST_UID}; pwd; cat a.txt; echo new > b.txt; mkdir d; stat -c %u . b.txt d`, { workspace: { files: { 'a.txt': 'mine\n' } } });
  t.match(r.task, { status: 'succeeded' });
  const [ids, pwd, content, ...owners] = r.stdout.trim().split('\n');
  const [inside, host, first, size] = ids!.split(' ');
  t.equal(inside, '65532', 'the task is 65532 inside');
  t.ok(uids.includes(host!), `it runs as the host UID of a pre-started sandbox (${host})`);
  t.same([first, size], ['0', '65536'], 'in that sandbox\'s user namespace');
  t.equal(pwd, '/workspace');
  t.equal(content, 'mine', 'its cwd shows its workspace, not the slot');
  t.same(owners, ['65532', '65532', '65532'], 'the workspace and what it wrote are its own inside');
  const dir = await srv.mountWorkspace(r.task.workspaceId);
  t.equal(statSync(join(dir, 'b.txt')).uid, 65532, 'a written file is owned by 65532 on disk');
  t.equal(statSync(join(dir, 'd')).uid, 65532);
  t.equal(statSync(join(dir, 'b.txt')).gid, 65532);
  t.same(await viewsOf(host!), [], "the views for the member's UID are unmounted after the task");
  // Two tasks handed pre-started sandboxes, one while the other runs: two host UIDs.
  t.ok(await srv.services.pool.ready(60_000));
  const a = await submit(srv.url, { command: `${HOST_UID}; sleep 2` });
  const b = await warm(t, HOST_UID);
  const aDone = await waitDone(srv.url, a.id);
  t.equal(aDone.status, 'succeeded');
  const aUid = (await api(srv.url, 'GET', `/v1/tasks/${a.id}/logs?stream=stdout`)).text.split(' ')[1];
  const bUid = b.stdout.split(' ')[1];
  t.not(aUid, bUid, 'two pooled tasks at once have different host UIDs');
  t.not(bUid, '65532');
});

t.test("a task without a workspace writes the spare, through the member's view, as 65532 on disk", async (t) => {
  const r = await warm(t, `${HOST_UID}; echo x > f; stat -c %u f`);
  const [ids, owner] = r.stdout.trim().split('\n');
  t.equal(owner, '65532');
  const host = ids!.split(' ')[1]!;
  t.not(host, '65532', 'a host UID of its own');
  const dir = await srv.mountWorkspace(r.task.workspaceId);
  t.equal(statSync(join(dir, 'f')).uid, 65532, 'owned by 65532 on disk');
  t.same(await viewsOf(host), [], 'its view is unmounted after the task');
});

t.test('no member is started while only queue.concurrency host UID slots are free: tasks start cold, as host UIDs of their own', async (t) => {
  const tight = await startTestServer({ pool: { size: 2 }, queue: { concurrency: 2 }, sandbox: { userNamespaces: { slots: 2 } } });
  t.teardown(() => tight.close());
  await sleep(1500);
  t.equal(tight.services.pool.stats().ready, 0, 'no pre-started sandbox');
  const [a, b] = await Promise.all([runTask(tight.url, HOST_UID), runTask(tight.url, HOST_UID)]);
  t.equal(a.task.status, 'succeeded');
  t.equal(b.task.status, 'succeeded', 'both tasks at once found a slot');
  t.not(a.stdout.split(' ')[1], b.stdout.split(' ')[1]);
  t.equal(tight.services.engine.handoffs, 0);
});
