import t from 'tap';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

// Every task runs as the same host UID, so the kernel's per-user counters are shared between them.
const srv = await startTestServer({ queue: { concurrency: 2 } });
t.teardown(() => srv.close());

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
