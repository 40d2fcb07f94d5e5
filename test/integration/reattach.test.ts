/**
 * Restarts lose nothing: the server in a child process is killed (-9) or signalled (SIGTERM)
 * under running tasks and started again on the same data directory. Its tasks' containers are
 * adopted: every line exactly once and in order (those printed while no server ran included), the
 * real exit code, the original deadline; queued tasks run after it.
 */
import Docker from 'dockerode';
import t from 'tap';
import { api, collectStream, submit, waitDone, type Frame } from '../helpers/client.js';
import { sleep, leftContainers, taskContainers } from '../helpers/host.js';
import { BOTH_ISOLATIONS, ISOLATIONS } from '../helpers/isolation.js';
import { keptDataDir, type ServerProcess, startServerProcess, startTestServer } from '../helpers/server.js';

const socketPath = process.env.SANDBOXSHIFT_TEST_SOCKET!;
const docker = new Docker({ socketPath });

const tempData = (t: Tap.Test) => keptDataDir(t, 'sbx-reattach-');

/** A server process, ended (SIGKILL) at teardown if the test did not end it. */
async function server(t: Tap.Test, dataDir: string, extra: Record<string, unknown> = {}): Promise<ServerProcess> {
  const srv = await startServerProcess({ dataDir, queue: { concurrency: 1 }, ...extra });
  t.teardown(async () => {
    srv.kill('SIGKILL');
    await srv.exited;
  });
  return srv;
}

async function waitStatus(url: string, id: string, status: string) {
  for (let i = 0; i < 100; i++) {
    if ((await api(url, 'GET', `/v1/tasks/${id}`)).json.status === status) return;
    await sleep(100);
  }
  throw new Error(`task ${id} never reached ${status}`);
}

const stdoutText = (frames: Frame[]) => frames.filter((f) => f.type === 'stdout').map((f) => f.data as string).join('');
const LINES = 60;
const expected = Array.from({ length: LINES }, (_, i) => `line${i + 1}\n`).join('');
// 60 lines over about 2-3 s, then exit code 7. Lines come faster than the server checkpoints its
// place in the engine's log, so a restart always re-reads some lines it already has.
const COUNTER = `for i in $(seq 1 ${LINES}); do echo line$i; sleep 0.03; done; exit 7`;

/** Streams the task until `line7`, then ends the server with `signal`; returns the frames seen. */
async function streamThenStop(srv: ServerProcess, id: string, signal: NodeJS.Signals) {
  let stopped = false;
  const seen = await collectStream(srv.wsUrl, id, {
    onFrame: (f) => {
      if (!stopped && f.type === 'stdout' && String(f.data).includes('line7\n')) {
        stopped = true;
        srv.kill(signal);
      }
    },
  });
  const code = await srv.exited;
  return { frames: seen.frames, closeCode: seen.closeCode, exitCode: code };
}

async function checkContinued(t: Tap.Test, url: string, wsUrl: string, id: string, before: Frame[]) {
  const last = before[before.length - 1]!.seq;
  const after = await collectStream(wsUrl, id, { after: last });
  const all = [...before, ...after.frames];
  t.same(all.map((f) => f.seq), all.map((_, i) => i + 1), 'seq continues with the next number: no gap, no duplicate');
  t.equal(stdoutText(all), expected, 'every line exactly once, in order, including those printed while the server was down');
  t.match(all[all.length - 1], { type: 'exit', status: 'failed', exitCode: 7 });
  t.match(await waitDone(url, id), { status: 'failed', exitCode: 7, reason: null, output: { stdoutBytes: expected.length, truncated: false } });
  t.equal((await api(url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`)).text, expected, 'the stored log is the same');
  t.same(await leftContainers(socketPath, id), [], 'the container is removed once the exit is read');
}

// Under each isolation: a gVisor task's container is adopted like a runc one (the next server
// starts its own gVisor service; the container runs on under conmon meanwhile).
for (const isolation of ISOLATIONS) {
  t.test(`${isolation}: kill -9 while a task streams: re-attached, every line exactly once, exact exit; a queued task runs after`, async (t) => {
    const dataDir = tempData(t);
    const first = await server(t, dataDir, BOTH_ISOLATIONS);
    const { id } = await submit(first.url, { command: COUNTER, isolation });
    const queued = await submit(first.url, { command: 'echo queued-ran', isolation });
    const { frames } = await streamThenStop(first, id, 'SIGKILL');
    await sleep(800); // lines keep coming while no server runs
    const second = await server(t, dataDir, BOTH_ISOLATIONS);
    await checkContinued(t, second.url, second.wsUrl, id, frames);
    t.match(await waitDone(second.url, queued.id), { status: 'succeeded', isolation }, 'the task queued before the crash ran after it');
    t.equal((await api(second.url, 'GET', `/v1/tasks/${queued.id}/logs`)).text, 'queued-ran\n');
    t.match((await api(second.url, 'GET', `/v1/tasks/${id}`)).json, { isolation });
  });
}

t.test('SIGTERM: streams close with 1001, the container is left running and adopted by the next start', async (t) => {
  const dataDir = tempData(t);
  const first = await server(t, dataDir);
  const { id } = await submit(first.url, { command: COUNTER });
  const { frames, closeCode, exitCode } = await streamThenStop(first, id, 'SIGTERM');
  t.equal(exitCode, 0, 'the server exits 0');
  t.equal(closeCode, 1001, 'the WebSocket was closed with 1001 (going away)');
  t.equal((await taskContainers(socketPath, id)).length, 1, 'the container was left running');
  await sleep(500);
  const second = await server(t, dataDir);
  await checkContinued(t, second.url, second.wsUrl, id, frames);
});

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
  for (const c of await taskContainers(socketPath, vanishes.id)) await docker.getContainer(c).remove({ force: true });
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
  for (let i = 0; i < 50 && (await taskContainers(socketPath, id)).length === 0; i++) await sleep(100);
  const [container] = await taskContainers(socketPath, id);
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
