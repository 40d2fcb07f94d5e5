import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { api, submit, waitDone } from '../helpers/client.js';
import { sleep } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';

t.test('the retention sweep removes a task finished past retention.taskDays and keeps a recent one', async (t) => {
  const srv = await startTestServer({ retention: { taskDays: 30, sweepIntervalSeconds: 1 } });
  t.teardown(() => srv.close());
  const old = await submit(srv.url, { command: 'echo old' });
  const recent = await submit(srv.url, { command: 'echo recent' });
  await waitDone(srv.url, old.id);
  await waitDone(srv.url, recent.id);
  t.ok(existsSync(join(srv.dataDir, 'tasks', old.id)), 'the old task has its log directory');

  // Age one task in the server's own SQLite file: it finished 31 days ago. Both get an egress decision.
  const db = new Database(join(srv.dataDir, 'sandboxshift.db'));
  t.teardown(() => db.close());
  const aged = new Date(Date.now() - 31 * 86_400_000).toISOString();
  db.prepare("UPDATE tasks SET data = json_set(data, '$.finishedAt', ?) WHERE id = ?").run(aged, old.id);
  const decision = JSON.stringify({ time: aged, host: 'example.test', port: 443, allowed: false, reason: 'not_allowlisted', address: null, bytesUp: 0, bytesDown: 0 });
  for (const id of [old.id, recent.id]) db.prepare('INSERT INTO egress_decisions (task_id, data) VALUES (?, ?)').run(id, decision);

  let status = 200;
  for (let i = 0; i < 100 && status === 200; i++) {
    await sleep(100);
    status = (await api(srv.url, 'GET', `/v1/tasks/${old.id}`)).status;
  }
  const gone = await api(srv.url, 'GET', `/v1/tasks/${old.id}`);
  t.equal(gone.status, 404, 'the old task is gone');
  t.equal(gone.json?.error?.code, 'TASK_NOT_FOUND');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${old.id}/logs`)).status, 404, 'so are its logs');
  // The record goes first; the directory is removed right after it.
  for (let i = 0; i < 50 && existsSync(join(srv.dataDir, 'tasks', old.id)); i++) await new Promise((r) => setTimeout(r, 100));
  t.notOk(existsSync(join(srv.dataDir, 'tasks', old.id)), 'its log directory was removed');
  const left = db.prepare('SELECT COUNT(*) AS n FROM egress_decisions WHERE task_id = ?');
  t.equal((left.get(old.id) as { n: number }).n, 0, 'its egress decisions were removed');

  const kept = await api(srv.url, 'GET', `/v1/tasks/${recent.id}`);
  t.equal(kept.status, 200, 'the recent task is kept');
  t.equal(kept.json.status, 'succeeded');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${recent.id}/logs`)).text, 'recent\n', 'with its log');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${recent.id}/egress`)).json.decisions.length, 1, 'and its egress decision');
});
