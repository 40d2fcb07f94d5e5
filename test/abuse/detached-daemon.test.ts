// Attack: leave something running after the task "ends" — a daemon detached with setsid and
// nohup, in its own session and process group, ignoring SIGHUP and SIGTERM — to keep compute (or
// a foothold) after the task reports success. Defence: the task's processes live in the
// container's PID namespace under an init; when the command exits the init exits, and the kernel
// kills every process left in the namespace.
import t from 'tap';
import { runTask } from '../helpers/client.js';
import { hostProcesses, leftContainers, sleep } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());

t.test('a detached daemon does not outlive its task', async (t) => {
  const marker = 81234;
  const r = await runTask(srv.url, `setsid nohup sh -c 'trap "" HUP TERM; sleep ${marker}' >/dev/null 2>&1 & sleep 0.3; echo detached`);
  t.equal(r.stdout, 'detached\n');
  t.match(r.task, { status: 'succeeded', exitCode: 0 }, 'the task ends when its command does, not when the daemon does');
  await sleep(500);
  t.same(hostProcesses(`sleep ${marker}`), [], 'the daemon is gone');
  t.same(await leftContainers(srv.services.socketPath, r.id), [], 'and so is the container');
});
