/**
 * Restarts lose nothing: the server in a child process is killed (-9) or signalled (SIGTERM)
 * under running tasks and started again on the same data directory. Its tasks' containers are
 * adopted: every line exactly once and in order (those printed while no server ran included), the
 * real exit code; queued tasks run after it. Deadlines and outcomes across a restart:
 * reattach-deadline.test.ts.
 */
import Docker from 'dockerode';
import t from 'tap';
import { api, collectStream, submit, waitDone, type Frame } from '../helpers/client.js';
import { sleep, leftContainers, taskContainers } from '../helpers/host.js';
import { BOTH_ISOLATIONS, ISOLATIONS } from '../helpers/isolation.js';
import { server, tempData } from '../helpers/restart.js';
import type { ServerProcess } from '../helpers/server.js';

const socketPath = process.env.SANDBOXSHIFT_TEST_SOCKET!;
const docker = new Docker({ socketPath });

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
