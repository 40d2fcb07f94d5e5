// Attack: kill or signal the container's init (PID 1) to confuse the server's bookkeeping, or
// signal processes outside the container. Defence: PID 1 is the init Podman injects; the task
// may end its own container (a failure of its own making, reported as such), but has no way to
// name a process outside its PID namespace.
import t from 'tap';
import { runTask } from '../helpers/client.js';
import { leftContainers } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());

t.test('killing PID 1 ends only this task, reported as its own failure', async (t) => {
  const r = await runTask(srv.url, 'kill -9 1; kill -TERM 1; sleep 5; echo survived');
  t.not(r.stdout, 'survived\n');
  t.equal(r.task.status === 'failed' || r.task.status === 'succeeded', true, `the task ran and ended (${r.task.status})`);
  t.not(r.task.status, 'error', 'the server did not lose track of it');
  t.same(await leftContainers(srv.services.socketPath, r.id), []);
});

t.test('processes outside the container cannot be seen or signalled', async (t) => {
  // This test's own process is on the host, outside the task's PID namespace.
  const hostPid = process.pid;
  const r = await runTask(
    srv.url,
    `ls /proc | grep -cE "^[0-9]+$"; test -e /proc/${hostPid} && echo host-pid-visible; kill -0 ${hostPid} 2>&1; echo rc=$?`,
  );
  const m = /^(\d+)\n([\s\S]*)rc=(\d+)\n$/.exec(r.stdout);
  t.ok(m, `the probe ran to its end: ${JSON.stringify(r.stdout)}`);
  const [count, said, rc] = [Number(m?.[1]), m?.[2] ?? '', Number(m?.[3])];
  t.ok(count >= 1 && count < 10, `only the task's own few processes are visible (${count})`);
  t.notMatch(said, /host-pid-visible/, "the host's process is not in the task's /proc");
  t.match(said, /No such process/, 'signalling a host PID finds no such process (not merely "not permitted")');
  t.not(rc, 0, 'kill fails');
});
