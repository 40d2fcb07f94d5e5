import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import t from 'tap';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { sleep } from '../helpers/host.js';
import { keptDataDir, startServerProcess, startTestServer } from '../helpers/server.js';

// Per-user kernel counters: those the server can raise are raised; the others are each task's own
// because each task runs as a host UID of its own (a user namespace per task).
const srv = await startTestServer({ queue: { concurrency: 2 } });
t.teardown(() => srv.close());

/**
 * Starts `hog` (a Python program that prints one line once it holds what it can, then sleeps),
 * waits for that line, then runs `probe` beside it. The hog is cancelled afterwards.
 */
async function beside(hog: string, probe: string, on: { url: string; before?: () => Promise<unknown> } = srv): Promise<{ held: string; probe: Awaited<ReturnType<typeof runTask>>; hogStatus: string }> {
  const url = on.url;
  await on.before?.();
  const h = await submit(url, { command: `python3 -c '${hog}'`, timeoutSeconds: 90 });
  let held = '';
  for (let i = 0; i < 300 && !held; i++) {
    held = (await api(url, 'GET', `/v1/tasks/${h.id}/logs?stream=stdout`)).text;
    if (!held) await new Promise((r) => setTimeout(r, 100));
  }
  await on.before?.();
  const p = await runTask(url, `python3 -c '${probe}'`);
  const hogStatus = (await api(url, 'GET', `/v1/tasks/${h.id}`)).json.status;
  await api(url, 'POST', `/v1/tasks/${h.id}/cancel`);
  await waitDone(url, h.id);
  return { held, probe: p, hogStatus };
}

const UID_MAP = 'open("/proc/self/uid_map").read().split()[1]';

const INOTIFY = 'import ctypes, os; libc = ctypes.CDLL(None, use_errno=True)';

t.test('one task holding every inotify instance it can open leaves another task its own', async (t) => {
  const hog = await submit(srv.url, {
    command: `python3 -c '${INOTIFY}
fds = []
while libc.inotify_init() >= 0: fds.append(1)
print(len(fds), os.strerror(ctypes.get_errno()), flush=True)
import time; time.sleep(60)'`,
    timeoutSeconds: 90,
  });
  let held = '';
  for (let i = 0; i < 300 && !held; i++) {
    held = (await api(srv.url, 'GET', `/v1/tasks/${hog.id}/logs?stream=stdout`)).text;
    if (!held) await new Promise((r) => setTimeout(r, 100));
  }
  const [count] = held.split(' ');
  t.ok(Number(count) > 1000, `the first task opened ${held.trim()}: bounded by its own open-file limit`);
  const other = await runTask(srv.url, `python3 -c '${INOTIFY}
fd = libc.inotify_init(); print("ok" if fd >= 0 else os.strerror(ctypes.get_errno()))'`);
  t.equal(other.stdout, 'ok\n', 'a task beside it still gets an inotify instance');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${hog.id}`)).json.status, 'running', 'while the first still holds its own');
  await api(srv.url, 'POST', `/v1/tasks/${hog.id}/cancel`);
  await waitDone(srv.url, hog.id);
});

t.test('POSIX message queues, charged to one per-user byte budget, are refused', async (t) => {
  const r = await runTask(srv.url, `python3 -c 'import ctypes, os
rt = ctypes.CDLL("librt.so.1", use_errno=True)
fd = rt.mq_open(b"/q", os.O_CREAT | os.O_RDWR, 0o600, None)
print("opened" if fd >= 0 else os.strerror(ctypes.get_errno()))'`);
  t.equal(r.stdout, 'Operation not permitted\n');
});

t.test('one task holding every queued signal it may leaves another task its own (RLIMIT_SIGPENDING)', async (t) => {
  const SIGQUEUE = 'import ctypes, os, signal, time; libc = ctypes.CDLL(None, use_errno=True); signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])\nq = lambda: libc.sigqueue(os.getpid(), int(signal.SIGRTMIN), ctypes.c_void_p(0)) == 0';
  const r = await beside(
    `${SIGQUEUE}
n = 0
while q(): n += 1
print(n, os.strerror(ctypes.get_errno()), ${UID_MAP}, flush=True)
time.sleep(60)`,
    `${SIGQUEUE}
print("queued" if q() else os.strerror(ctypes.get_errno()), ${UID_MAP})`,
  );
  const [count, ...rest] = r.held.trim().split(' ');
  const hogUid = rest.pop();
  t.ok(Number(count) > 1000, `the first task queued ${r.held.trim()}: bounded by its own limit`);
  const [answer, probeUid] = r.probe.stdout.trim().split(' ');
  t.equal(answer, 'queued', 'a task beside it still queues a signal');
  t.not(probeUid, hogUid, 'the two tasks run as different host UIDs');
  t.equal(r.hogStatus, 'running', 'while the first still holds its own');
});

t.test('two tasks handed pre-started sandboxes run as two host UIDs: one holding every queued signal and inotify instance it may leaves the other its own', async (t) => {
  const warm = await startTestServer({ queue: { concurrency: 2 }, pool: { size: 2 } });
  t.teardown(() => warm.close());
  const before = warm.services.engine.handoffs;
  const SIGQUEUE = 'import ctypes, os, signal, time; libc = ctypes.CDLL(None, use_errno=True); signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])\nq = lambda: libc.sigqueue(os.getpid(), int(signal.SIGRTMIN), ctypes.c_void_p(0)) == 0';
  const r = await beside(
    `${SIGQUEUE}
uid = ${UID_MAP}
n = 0
while q(): n += 1
fds = []
while libc.inotify_init() >= 0: fds.append(1)
print(n, len(fds), uid, flush=True)
time.sleep(60)`,
    `${SIGQUEUE}
s = "queued" if q() else os.strerror(ctypes.get_errno())
i = "inotify" if libc.inotify_init() >= 0 else os.strerror(ctypes.get_errno())
print(s, i, ${UID_MAP})`,
    { url: warm.url, before: () => warm.services.pool.ready(60_000) },
  );
  t.equal(warm.services.engine.handoffs, before + 2, 'both tasks were handed pre-started sandboxes');
  const [signals, instances, hogUid] = r.held.trim().split(' ');
  t.ok(Number(signals) > 1000, `the first task queued ${signals} signals: bounded by its own limit`);
  t.ok(Number(instances) > 1000, `and opened ${instances} inotify instances`);
  const [queued, inotify, probeUid] = r.probe.stdout.trim().split(' ');
  t.equal(queued, 'queued', 'a pooled task beside it still queues a signal');
  t.equal(inotify, 'inotify', 'and gets an inotify instance');
  t.not(probeUid, hogUid, 'the two pooled tasks run as different host UIDs');
  t.ok(Number(hogUid) >= 0x70000000 && Number(probeUid) >= 0x70000000, "both in the server's range");
  t.equal(r.hogStatus, 'running', 'while the first still holds its own');
});

t.test('one task with every file it may have in flight on Unix sockets leaves another task its own', async (t) => {
  const r = await beside(
    `import array, errno, os, socket, time
fds = array.array("i", [os.open("/dev/null", os.O_RDONLY)] * 250)
pairs, n = [], 0
try:
    while True:
        a, b = socket.socketpair(); pairs.append((a, b))
        for _ in range(4):
            a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]); n += 250
except OSError as e:
    print(n, errno.errorcode[e.errno], flush=True)
time.sleep(60)`,
    `import array, errno, os, socket
a, b = socket.socketpair()
try:
    a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [os.open("/dev/null", os.O_RDONLY)]))]); print("sent")
except OSError as e:
    print(errno.errorcode[e.errno])`,
  );
  t.match(r.held, /^\d+ ETOOMANYREFS\n$/, `the first task reached its in-flight limit: ${r.held.trim()}`);
  t.equal(r.probe.stdout, 'sent\n', 'a task beside it still passes a file descriptor');
  t.equal(r.hogStatus, 'running');
});

t.test('after kill -9 an adopted task keeps its host UID (its container label); a task beside it gets another', async (t) => {
  const docker = new Docker({ socketPath: process.env.SANDBOXSHIFT_TEST_SOCKET! });
  const dataDir = keptDataDir(t, 'sbx-uid-kept-');
  const first = await startServerProcess({ dataDir });
  t.teardown(() => first.kill('SIGKILL'));
  // Prints its host UID, then waits (at most 60 s) for the test's stop file and writes after it.
  const hostUidOf = 'read inside host size < /proc/self/uid_map; echo $((host + 65532))';
  const { id } = await submit(first.url, { command: `${hostUidOf}; for i in $(seq 1 300); do test -e stop && break; sleep 0.2; done; echo after > after.txt; cat after.txt`, timeoutSeconds: 120 });
  const out = async (url: string, task: string) => (await api(url, 'GET', `/v1/tasks/${task}/logs?stream=stdout`)).text;
  for (let i = 0; i < 300 && !(await out(first.url, id)); i++) await sleep(100);
  const uid = (await out(first.url, id)).trim();
  t.match(uid, /^\d+$/);
  t.not(uid, '65532', 'a host UID of its own');
  const [c] = await docker.listContainers({ filters: { label: [`io.sandboxshift.task=${id}`] } });
  t.equal(c?.Labels['io.sandboxshift.host-uid'], uid, 'recorded on the container');
  first.kill('SIGKILL');
  await first.exited;
  const second = await startServerProcess({ dataDir });
  t.teardown(() => second.kill('SIGKILL'));
  // The adopted task still holds its slot: the next task is given another.
  const beside = await runTask(second.url, hostUidOf);
  t.equal(beside.task.status, 'succeeded');
  t.match(beside.stdout, /^\d+\n$/);
  t.not(beside.stdout.trim(), uid, 'a task started after the restart gets another host UID');
  const workspaceId = (await api(second.url, 'GET', `/v1/tasks/${id}`)).json.workspaceId as string;
  writeFileSync(join(dataDir, 'workspaces', workspaceId, 'stop'), '');
  const done = await waitDone(second.url, id, 90_000);
  t.match(done, { status: 'succeeded', exitCode: 0 }, 'the adopted task writes its workspace after the restart');
  t.equal(await out(second.url, id), `${uid}\nafter\n`);
});
