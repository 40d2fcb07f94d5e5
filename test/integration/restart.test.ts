import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import Docker from 'dockerode';
import t from 'tap';
import { api, collectStream, submit, waitDone } from '../helpers/client.js';
import { sleep, leftContainers } from '../helpers/host.js';
import { startTestServer, TEST_LABEL } from '../helpers/server.js';

const dataDir = mkdtempSync(join(tmpdir(), 'sbx-restart-'));
t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));

t.test('a restart keeps finished tasks and logs, runs queued tasks, and marks running ones lost', async (t) => {
  const first = await startTestServer({ dataDir, queue: { concurrency: 1 } });
  const done = await submit(first.url, { command: 'echo kept' });
  await waitDone(first.url, done.id);
  const running = await submit(first.url, { command: 'echo going; sleep 60' });
  const queued = await submit(first.url, { command: 'echo ran-after-restart' });
  for (let i = 0; i < 50 && (await api(first.url, 'GET', `/v1/tasks/${running.id}`)).json.status !== 'running'; i++) await sleep(100);
  await first.close();

  const second = await startTestServer({ dataDir, queue: { concurrency: 1 } });
  t.teardown(() => second.close());
  t.match(await waitDone(second.url, done.id), { status: 'succeeded' });
  t.equal((await api(second.url, 'GET', `/v1/tasks/${done.id}/logs`)).text, 'kept\n', 'logs survive a restart');
  t.match(await waitDone(second.url, running.id), { status: 'error', reason: 'lost' });
  t.same(await leftContainers(second.services.socketPath, running.id), []);
  const q = await waitDone(second.url, queued.id);
  t.match(q, { status: 'succeeded' }, 'a queued task runs after the restart');
  const frames = (await collectStream(second.wsUrl, queued.id)).frames;
  t.same(frames.map((f) => f.seq), frames.map((_, i) => i + 1), 'its log continues without a gap');
  t.equal(frames.filter((f) => f.type === 'status' && f.status === 'queued').length, 1);
});

t.test('after a crash: running tasks read lost and their orphaned containers are reaped', async (t) => {
  const srv = await startTestServer({ dataDir });
  const { serverId, socketPath } = srv.services;
  const { id } = await submit(srv.url, { command: 'sleep 60' });
  for (let i = 0; i < 50 && (await api(srv.url, 'GET', `/v1/tasks/${id}`)).json.status !== 'running'; i++) await sleep(100);
  // Simulate a crash: leave the container running and the record at `running`, then start anew.
  const docker = new Docker({ socketPath });
  const orphan = await docker.createContainer({
    Image: 'sandboxshift/runtime-python:3.11',
    Cmd: ['sleep', '60'],
    Labels: { ...TEST_LABEL, 'io.sandboxshift.managed': '1', 'io.sandboxshift.server': serverId, 'io.sandboxshift.task': 'tsk_orphan' },
    HostConfig: { NetworkMode: 'none', Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 1024 }, { Name: 'nproc', Soft: 1024, Hard: 1024 }] },
  });
  await orphan.start();
  const snapshot = new Database(join(dataDir, 'sandboxshift.db')).prepare('SELECT data FROM tasks WHERE id = ?').get(id) as { data: string };
  await srv.close();
  const db = new Database(join(dataDir, 'sandboxshift.db'));
  db.prepare('UPDATE tasks SET status = ?, data = ? WHERE id = ?').run('running', snapshot.data, id);
  db.close();
  // A crash mid-upload or mid-clone leaves intake spool files and clone directories behind.
  mkdirSync(join(dataDir, 'tmp', 'git-crashed', 'sub'), { recursive: true });
  writeFileSync(join(dataDir, 'tmp', 'upload-crashed.zip'), 'partial');

  const again = await startTestServer({ dataDir });
  t.same(readdirSync(join(dataDir, 'tmp')), [], 'intake leftovers were removed at start-up');
  t.teardown(() => again.close());
  t.match(await waitDone(again.url, id), { status: 'error', reason: 'lost', error: /server/ });
  t.same(await leftContainers(socketPath, 'tsk_orphan'), [], 'the orphan was reaped at start-up');
  const frames = (await collectStream(again.wsUrl, id)).frames;
  t.equal(frames.filter((f) => f.type === 'exit').length, 1, 'exactly one exit frame');
});
