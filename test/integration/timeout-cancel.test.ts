import t from 'tap';
import { api, collectStream, submit, waitDone } from '../helpers/client.js';
import { hostProcesses, sleep, leftContainers, taskContainers } from '../helpers/host.js';
import { BOTH_ISOLATIONS, ISOLATIONS, type TestIsolation } from '../helpers/isolation.js';
import { startTestServer } from '../helpers/server.js';

// The engine's backstop far past the deadline: a task ended within the bound below was ended by
// the server's own timeout, not by the engine.
const BACKSTOP_SECONDS = 30;
const srv = await startTestServer({ ...BOTH_ISOLATIONS, queue: { concurrency: 1 }, sandbox: { backstopSeconds: BACKSTOP_SECONDS } });
t.teardown(() => srv.close());

/** A tree that ignores SIGTERM and escapes into new sessions; `n` makes its command lines unique. */
const stubborn = (n: number) =>
  `trap "" TERM; setsid sh -c 'trap "" TERM; sleep ${n}1' & setsid sleep ${n}2 & (trap "" TERM; sleep ${n}3) & echo started; sleep ${n}4`;

async function waitForOutput(id: string, text: string) {
  for (let i = 0; i < 100; i++) {
    if ((await api(srv.url, 'GET', `/v1/tasks/${id}/logs`)).text.includes(text)) return;
    await sleep(100);
  }
  throw new Error(`task ${id} never printed ${text}`);
}

/**
 * How the host sees a running task's tree: under runc its processes themselves (three sleeps with
 * the marker); under gVisor they live inside the sandbox's user-space kernel, so the host sees
 * runsc's sandbox and gofer processes, named by the container's id.
 */
async function treeOnHost(id: string, marker: number): Promise<{ needle: string; least: number }> {
  const task = await api(srv.url, 'GET', `/v1/tasks/${id}`);
  if (task.json.isolation !== 'gvisor') return { needle: `sleep ${marker}`, least: 3 };
  const [container] = await taskContainers(srv.services.socketPath, id);
  return { needle: `${container}`, least: 3 };
}

/**
 * The host processes still matching `needle`, once they are gone or after 5 s: runsc's sandbox
 * and gofer end a moment after the container's exit is recorded (under runc the tree dies with
 * the container's PID namespace, before its exit).
 */
async function survivors(needle: string): Promise<number[]> {
  for (let i = 0; i < 50 && hostProcesses(needle).length > 0; i++) await sleep(100);
  return hostProcesses(needle);
}

// Timeouts and cancel end the whole tree under each isolation.
function stopping(t: Tap.Test, isolation: TestIsolation) {
  t.test('a task past its timeout ends timed_out and leaves no process or container behind', async (t) => {
    const marker = 73101;
    const submitted = Date.now();
    // The timeout counts from when the task leaves the queue, container creation included: 4 s
    // leave the command time to print under load.
    const { id } = await submit(srv.url, { isolation, command: stubborn(marker), timeoutSeconds: 4 });
    await waitForOutput(id, 'started');
    const tree = await treeOnHost(id, marker);
    t.ok(hostProcesses(tree.needle).length >= tree.least, 'the process tree is running on the host');
    const task = await waitDone(srv.url, id);
    t.match(task, { status: 'timed_out', reason: 'timeout', exitCode: 137 });
    // How late, measured from when the task started running (queueing is not part of the timeout):
    // the 2 s grace before SIGKILL plus the engine's stop, which gVisor takes seconds for under load.
    // 12 s is well short of BACKSTOP_SECONDS, so the server's own timeout ended it.
    t.ok(task.durationMs < (4 + 12) * 1000, `ended within timeout + 12 s of its start (ran ${task.durationMs} ms)`);
    t.ok(Date.now() - submitted < 60_000, 'and the client saw it end');
    t.same(await survivors(tree.needle), [], 'no process of the tree survives, setsid or not');
    t.same(await leftContainers(srv.services.socketPath, id), [], 'no container is left');
    const { frames } = await collectStream(srv.wsUrl, id);
    t.match(frames[frames.length - 1], { type: 'exit', status: 'timed_out', reason: 'timeout', exitCode: 137 });
  });

  t.test('cancel a running task: cancelled, tree gone, no container', async (t) => {
    const marker = 73202;
    const { id } = await submit(srv.url, { isolation, command: stubborn(marker), timeoutSeconds: 120 });
    await waitForOutput(id, 'started');
    const tree = await treeOnHost(id, marker);
    t.ok(hostProcesses(tree.needle).length >= tree.least, 'the process tree is running on the host');
    const r = await api(srv.url, 'POST', `/v1/tasks/${id}/cancel`);
    t.equal(r.status, 202);
    const task = await waitDone(srv.url, id, 15_000);
    t.match(task, { status: 'cancelled', reason: 'cancelled', exitCode: 137 });
    t.same(await survivors(tree.needle), []);
    t.same(await leftContainers(srv.services.socketPath, id), []);
    const again = await api(srv.url, 'POST', `/v1/tasks/${id}/cancel`);
    t.equal(again.status, 409, 'cancelling a finished task is a conflict');
    t.equal(again.json.error.code, 'TASK_NOT_ACTIVE');
  });
}

for (const isolation of ISOLATIONS) t.test(isolation, async (t) => stopping(t, isolation));

t.test('cancel a queued task: it never runs', async (t) => {
  const blocker = await submit(srv.url, { command: 'sleep 30', timeoutSeconds: 60 });
  const queued = await submit(srv.url, { command: 'echo should-not-run' });
  const before = await api(srv.url, 'GET', `/v1/tasks/${queued.id}`);
  t.equal(before.json.status, 'queued', 'concurrency 1 keeps it queued');
  const r = await api(srv.url, 'POST', `/v1/tasks/${queued.id}/cancel`);
  t.equal(r.status, 202);
  const task = await waitDone(srv.url, queued.id, 5000);
  t.match(task, { status: 'cancelled', reason: 'cancelled', exitCode: null, startedAt: null });
  const { frames } = await collectStream(srv.wsUrl, queued.id);
  t.same(frames.map((f) => f.type), ['status', 'exit'], 'queued, then exit: it never ran');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${queued.id}/logs`)).text, '');
  await api(srv.url, 'POST', `/v1/tasks/${blocker.id}/cancel`);
  t.equal((await waitDone(srv.url, blocker.id, 15_000)).status, 'cancelled');
});

t.test('cancel over the WebSocket', async (t) => {
  const { id } = await submit(srv.url, { command: 'echo ready; sleep 60' });
  const { frames, closeCode } = await collectStream(srv.wsUrl, id, {
    onFrame: (f, ws) => {
      if (f.type === 'stdout') ws.send(JSON.stringify({ type: 'cancel' }));
    },
  });
  t.equal(closeCode, 1000);
  t.match(frames[frames.length - 1], { type: 'exit', status: 'cancelled', reason: 'cancelled' });
});
