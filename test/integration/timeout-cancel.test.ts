import t from 'tap';
import { api, collectStream, submit, waitDone } from '../helpers/client.js';
import { hostProcesses, sleep, leftContainers } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ queue: { concurrency: 1 } });
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

t.test('a task past its timeout ends timed_out and leaves no process or container behind', async (t) => {
  const marker = 73101;
  const submitted = Date.now();
  const { id } = await submit(srv.url, { command: stubborn(marker), timeoutSeconds: 2 });
  await waitForOutput(id, 'started');
  t.ok(hostProcesses(`sleep ${marker}`).length >= 3, 'the process tree is running on the host');
  const task = await waitDone(srv.url, id);
  t.match(task, { status: 'timed_out', reason: 'timeout', exitCode: 137 });
  // How late, measured from when the task started running (queueing is not part of the timeout).
  t.ok(task.durationMs < (2 + 5) * 1000, `ended within timeout + 5 s of its start (ran ${task.durationMs} ms)`);
  t.ok(Date.now() - submitted < 60_000, 'and the client saw it end');
  t.same(hostProcesses(`sleep ${marker}`), [], 'no process of the tree survives, setsid or not');
  t.same(await leftContainers(srv.services.socketPath, id), [], 'no container is left');
  const { frames } = await collectStream(srv.wsUrl, id);
  t.match(frames[frames.length - 1], { type: 'exit', status: 'timed_out', reason: 'timeout', exitCode: 137 });
});

t.test('cancel a running task: cancelled, tree gone, no container', async (t) => {
  const marker = 73202;
  const { id } = await submit(srv.url, { command: stubborn(marker), timeoutSeconds: 120 });
  await waitForOutput(id, 'started');
  const r = await api(srv.url, 'POST', `/v1/tasks/${id}/cancel`);
  t.equal(r.status, 202);
  const task = await waitDone(srv.url, id, 15_000);
  t.match(task, { status: 'cancelled', reason: 'cancelled', exitCode: 137 });
  t.same(hostProcesses(`sleep ${marker}`), []);
  t.same(await leftContainers(srv.services.socketPath, id), []);
  const again = await api(srv.url, 'POST', `/v1/tasks/${id}/cancel`);
  t.equal(again.status, 409, 'cancelling a finished task is a conflict');
  t.equal(again.json.error.code, 'TASK_NOT_ACTIVE');
});

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
