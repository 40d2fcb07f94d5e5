/**
 * Restarts keep deadlines and outcomes: a task that exited or vanished while no server ran, a
 * timeout set before a crash, the engine's backstop while the server is down, and refusals
 * while shutting down.
 */
import Docker from 'dockerode';
import t from 'tap';
import { removeContainer } from '../../src/runtime/remove.js';
import { api, submit, waitDone } from '../helpers/client.js';
import { sleep, taskContainers } from '../helpers/host.js';
import { server, tempData, waitStatus } from '../helpers/restart.js';
import { startTestServer } from '../helpers/server.js';

const socketPath = process.env.SANDBOXSHIFT_TEST_SOCKET!;
const docker = new Docker({ socketPath });

t.test('exited while down: real exit code and output; container removed while down: error/lost', async (t) => {
  const dataDir = tempData(t);
  const first = await server(t, dataDir, { queue: { concurrency: 2 } });
  const exits = await submit(first.url, { command: 'echo started; sleep 1; echo finished-while-down; exit 3' });
  const vanishes = await submit(first.url, { command: 'sleep 30' });
  await waitStatus(first.url, exits.id, 'running');
  await waitStatus(first.url, vanishes.id, 'running');
  for (let i = 0; i < 50 && (await taskContainers(socketPath, vanishes.id)).length === 0; i++) await sleep(100);
  first.kill('SIGKILL');
  await first.exited;
  for (const c of await taskContainers(socketPath, vanishes.id)) await removeContainer(docker, c);
  // Until the first task has exited on its own.
  for (let i = 0; i < 50; i++) {
    const [c] = await taskContainers(socketPath, exits.id);
    if (c && !(await docker.getContainer(c).inspect()).State.Running) break;
    await sleep(100);
  }
  const second = await server(t, dataDir, { queue: { concurrency: 2 } });
  t.match(await waitDone(second.url, exits.id), { status: 'failed', exitCode: 3, reason: null });
  t.equal((await api(second.url, 'GET', `/v1/tasks/${exits.id}/logs`)).text, 'started\nfinished-while-down\n');
  t.match(await waitDone(second.url, vanishes.id), { status: 'error', reason: 'lost', error: /container/ });
});

t.test('a 3 s timeout set before the crash fires 3 s after the task started, not after the restart', async (t) => {
  const dataDir = tempData(t);
  const first = await server(t, dataDir);
  const { id } = await submit(first.url, { command: 'echo begun; sleep 60', timeoutSeconds: 3 });
  await waitStatus(first.url, id, 'running');
  // Its command has run (a task counts as running from just before its container starts).
  for (let i = 0; i < 100 && !(await api(first.url, 'GET', `/v1/tasks/${id}/logs`)).text.includes('begun'); i++) await sleep(100);
  first.kill('SIGKILL');
  await first.exited;
  const second = await server(t, dataDir);
  const restartedAt = Date.now();
  const task = await waitDone(second.url, id);
  t.match(task, { status: 'timed_out', reason: 'timeout' });
  const ran = Date.parse(task.finishedAt) - Date.parse(task.startedAt);
  // The server's own deadline, or the engine's backstop (sandbox.backstopSeconds, 5 s) when the
  // second server comes up after it: counted from the start either way.
  t.ok(ran >= 2900 && ran < 9500, `the deadline stood: finished ${ran} ms after it started`);
  t.ok(Date.parse(task.finishedAt) < restartedAt + 2000, 'not a fresh 3 s counted from the restart');
  t.equal((await api(second.url, 'GET', `/v1/tasks/${id}/logs`)).text, 'begun\n', 'its output is kept');
});

t.test('with the server down past the deadline, the engine stops the container (backstop)', async (t) => {
  const dataDir = tempData(t);
  const first = await server(t, dataDir, { sandbox: { backstopSeconds: 1 } });
  const { id } = await submit(first.url, { command: 'sleep 60', timeoutSeconds: 2 });
  await waitStatus(first.url, id, 'running');
  // Until its container has started: a task counts as running from just before the start, and a
  // container the server made but never started has no backstop to test.
  let container: string | undefined;
  for (let i = 0; i < 100; i++) {
    [container] = await taskContainers(socketPath, id);
    if (container && (await docker.getContainer(container).inspect()).State.Running) break;
    await sleep(100);
  }
  t.ok(container, 'its container started');
  first.kill('SIGKILL');
  await first.exited;
  let running = true;
  for (let i = 0; i < 100 && running; i++) {
    running = (await docker.getContainer(container!).inspect()).State.Running;
    if (running) await sleep(100);
  }
  t.notOk(running, 'no server runs, yet the container was stopped');
  const info = await docker.getContainer(container!).inspect();
  const ran = Date.parse(info.State.FinishedAt) - Date.parse(info.State.StartedAt);
  t.ok(ran >= 2500 && ran < 8000, `about the deadline plus the backstop (${ran} ms)`);
  const second = await server(t, dataDir);
  t.match(await waitDone(second.url, id), { status: 'timed_out', reason: 'timeout' }, 'the next start records it as timed out');
});

t.test('while shutting down new submissions get 503 SHUTTING_DOWN with Retry-After', async (t) => {
  const srv = await startTestServer({ shutdown: { retryAfterSeconds: 7 } });
  t.teardown(() => srv.close());
  await srv.services.drain();
  const r = await api(srv.url, 'POST', '/v1/tasks', { command: 'echo no' });
  t.equal(r.status, 503);
  t.equal(r.json.error.code, 'SHUTTING_DOWN');
  t.equal(r.headers.get('retry-after'), '7');
  t.equal((await api(srv.url, 'GET', '/v1/tasks?limit=1')).status, 200, 'reads still answer');
});
