/**
 * Secrets across a kill -9: the server dies while a task with secretEnv prints its value in halves
 * (a write, a pause, the rest) and another such task waits in the queue. The next start decrypts
 * both tasks' secrets: the adopted task's re-read output is masked as before, without a gap or a
 * duplicate, the queued one runs with its secret, and each stored copy is deleted when it ends.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { api, collectStream, submit, waitDone, type Frame } from '../helpers/client.js';
import { sleep } from '../helpers/host.js';
import { keptDataDir, startServerProcess, type ServerProcess } from '../helpers/server.js';
import { filesContaining, SECRET } from '../helpers/secrets.js';

async function server(t: Tap.Test, dataDir: string): Promise<ServerProcess> {
  const srv = await startServerProcess({ dataDir, queue: { concurrency: 1 } });
  t.teardown(async () => {
    srv.kill('SIGKILL');
    await srv.exited;
  });
  return srv;
}

const LINES = 30;
// Each line is the secret written in two halves 30 ms apart, so that reads (and the restart) fall inside it.
const SPLIT_LINES = `for i in $(seq 1 ${LINES}); do printf '%s' "$i:\${TOKEN%??????????}"; sleep 0.03; printf '%s\\n' "\${TOKEN#??????????}"; done`;
const expected = Array.from({ length: LINES }, (_, i) => `${i + 1}:***\n`).join('');
const stdoutText = (frames: Frame[]) => frames.filter((f) => f.type === 'stdout').map((f) => f.data as string).join('');

t.test('kill -9 mid-task: the adopted task stays masked, the queued one runs with its secret', async (t) => {
  const dataDir = keptDataDir(t, 'sbx-secrets-');
  const first = await server(t, dataDir);
  const { id } = await submit(first.url, { command: SPLIT_LINES, secretEnv: { TOKEN: SECRET } });
  const queued = await submit(first.url, { command: 'echo "queued:$TOKEN"', secretEnv: { TOKEN: SECRET } });
  let killed = false;
  let seen = '';
  const before = await collectStream(first.wsUrl, id, {
    onFrame: (f) => {
      if (f.type === 'stdout') seen += String(f.data);
      if (!killed && seen.includes('5:***')) {
        killed = true;
        first.kill('SIGKILL');
      }
    },
  });
  if (!killed) first.kill('SIGKILL');
  await first.exited;
  t.ok(killed, 'the server was killed while the task printed');
  t.ok(existsSync(join(dataDir, 'secrets', `${id}.enc`)) && existsSync(join(dataDir, 'secrets', `${queued.id}.enc`)), 'both tasks keep their secrets, encrypted');
  await sleep(300); // lines keep coming while no server runs

  const second = await server(t, dataDir);
  const last = before.frames[before.frames.length - 1]!.seq;
  const after = await collectStream(second.wsUrl, id, { after: last });
  const all = [...before.frames, ...after.frames];
  t.same(all.map((f) => f.seq), all.map((_, i) => i + 1), 'no gap, no duplicate');
  t.equal(stdoutText(all), expected, 'every line masked, those re-read after the restart included');
  t.match(await waitDone(second.url, id), { status: 'succeeded', output: { stdoutBytes: expected.length } });
  t.equal((await api(second.url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`)).text, expected, 'the stored log is masked');
  t.match(await waitDone(second.url, queued.id), { status: 'succeeded', secretEnvKeys: ['TOKEN'] });
  t.equal((await api(second.url, 'GET', `/v1/tasks/${queued.id}/logs`)).text, 'queued:***\n', 'the queued task had its secret after the restart');
  t.notOk(existsSync(join(dataDir, 'secrets', `${id}.enc`)), "the adopted task's stored secrets are gone once it ended");
  t.notOk(existsSync(join(dataDir, 'secrets', `${queued.id}.enc`)), "and the queued task's");
  t.same(filesContaining(dataDir), [], 'no file of the data directory holds the value');
});
