/**
 * A task's stdin survives what ends the server's connection to it: its stdin is a named pipe in a
 * per-task host directory, read in the container by the image's relay, which holds it open; a
 * restarted service or server opens it again. After (a) a kill of the owned Podman service, (b)
 * kill -9 of the server and a new start, (c) SIGTERM with shutdown.leaveRunning and a new start,
 * the task gets a second line and EOF: its output has both lines exactly once, and it exits 0.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import t from 'tap';
import { collectStream, submit, waitDone, type Frame } from '../helpers/client.js';
import { leftContainers, sleep } from '../helpers/host.js';
import { BOTH_ISOLATIONS, ISOLATIONS } from '../helpers/isolation.js';
import { isWarm } from '../helpers/paths.js';
import { keptDataDir, type ServerProcess, startServerProcess, startTestServer } from '../helpers/server.js';

const READER = 'while IFS= read -r l; do echo "got:$l"; done; echo eof-seen';
const EXPECTED = 'got:before\ngot:after\neof-seen\n';
const testSocket = process.env.SANDBOXSHIFT_TEST_SOCKET!;

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms`);
    await sleep(100);
  }
}

const stdoutOf = (frames: Frame[]) => frames.filter((f) => f.type === 'stdout').map((f) => String(f.data)).join('');

/**
 * Streams the task, sends `before`, waits for its echo, then runs `interrupt`; resolves with the
 * frames seen and the socket (still open when the server lives on).
 */
async function firstLine(wsUrl: string, id: string, interrupt: () => Promise<void>) {
  let seen = '';
  let socket: { send(data: string): void } | null = null;
  const stream = collectStream(wsUrl, id, {
    onOpen: (ws) => {
      socket = ws;
      ws.send(JSON.stringify({ type: 'stdin', data: 'before\n' }));
    },
    onFrame: (f: Frame) => {
      if (f.type === 'stdout') seen += String(f.data);
    },
  });
  await until('the task echoes the first line', () => seen.includes('got:before\n'));
  await interrupt();
  return { stream, send: (msg: unknown) => socket!.send(JSON.stringify(msg)) };
}

const secondLine = [
  { type: 'stdin', data: 'after\n' },
  { type: 'stdin', eof: true },
];

async function checkDone(t: Tap.Test, url: string, id: string, frames: Frame[], socketPath: string) {
  t.equal(stdoutOf(frames), EXPECTED, 'both lines exactly once, then end of input');
  t.match(frames[frames.length - 1], { type: 'exit', status: 'succeeded', exitCode: 0 });
  t.match(await waitDone(url, id), { status: 'succeeded', exitCode: 0 });
  t.same(await leftContainers(socketPath, id), [], 'the container is removed');
}

// (a) A server that owns its Podman API service (no socket configured): the test kills that
// service by its PID under a running task; the server starts it again.
t.test('owned Podman service killed and started again', async (t) => {
  const srv = await startTestServer({ engine: { ...BOTH_ISOLATIONS.engine, socket: null } });
  t.teardown(() => srv.close());
  const socketPath = srv.services.socketPath;
  const image = srv.services.config.images.languages.python!.image;
  const labels = await srv.services.engine.imageLabels(image);
  t.equal(labels?.['io.sandboxshift.relay.stdin'], '1', `the default image ${image} has a relay with the stdin mode (else rebuild it: scripts/setup.sh)`);
  const servicePid = () => Number.parseInt(readFileSync(`${socketPath}.pid`, 'utf8'), 10);
  const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  for (const isolation of ISOLATIONS) {
    await t.test(isolation, async (t) => {
      const { id } = await submit(srv.url, { command: READER, stdin: true, isolation, timeoutSeconds: 40 });
      const { stream, send } = await firstLine(srv.wsUrl, id, async () => {
        const first = servicePid();
        process.kill(first, 'SIGKILL');
        await until('the service is dead', () => !alive(first));
        await until('the server starts its service again', () => existsSync(`${socketPath}.pid`) && servicePid() !== first);
        const docker = new Docker({ socketPath });
        await until('the new service answers', () => docker.ping().then(() => true, () => false));
      });
      for (const m of secondLine) send(m);
      await checkDone(t, srv.url, id, (await stream).frames, socketPath);
    });
  }
});

/** A server process on `dataDir`, ended (SIGKILL) at teardown if the test did not end it. */
async function server(t: Tap.Test, dataDir: string): Promise<ServerProcess> {
  const srv = await startServerProcess({ dataDir, ...BOTH_ISOLATIONS, shutdown: { leaveRunning: true } });
  t.teardown(async () => {
    srv.kill('SIGKILL');
    await srv.exited;
  });
  return srv;
}

/** (b) and (c): the server ends with `signal` under the task; the next start on the same data directory adopts it. */
async function acrossRestart(t: Tap.Test, isolation: string, signal: NodeJS.Signals) {
  const dataDir = keptDataDir(t, 'sbx-stdin-restart-');
  const first = await server(t, dataDir);
  const { id } = await submit(first.url, { command: READER, stdin: true, isolation, timeoutSeconds: 40 });
  const { stream } = await firstLine(first.wsUrl, id, async () => {
    first.kill(signal);
    t.equal(await first.exited, signal === 'SIGKILL' ? 'SIGKILL' : 0, `the server ended (${signal})`);
  });
  const before = (await stream).frames;
  if (isWarm() && isolation === 'runc') {
    // The pool's claim of the member that took the task: its name is the container's, its content the task's id.
    const claims = join(dataDir, 'pool', 'claims');
    const claimed = readdirSync(claims).filter((c) => readFileSync(join(claims, c), 'utf8') === id);
    t.equal(claimed.length, 1, 'the task was handed to a pre-started sandbox');
  }
  const second = await server(t, dataDir);
  const after = await collectStream(second.wsUrl, id, {
    after: before[before.length - 1]!.seq,
    onOpen: (ws) => {
      for (const m of secondLine) ws.send(JSON.stringify(m));
    },
  });
  await checkDone(t, second.url, id, [...before, ...after.frames], testSocket);
}

for (const isolation of ISOLATIONS) {
  t.test(`${isolation}: server killed (-9) and started again`, (t) => acrossRestart(t, isolation, 'SIGKILL'));
}
t.test('runc: SIGTERM with shutdown.leaveRunning, then a new start', (t) => acrossRestart(t, 'runc', 'SIGTERM'));
