import t from 'tap';
import { api, submit, waitDone } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

t.test('past the queue limit: 429 with Retry-After, and nothing is created', async (t) => {
  const srv = await startTestServer({ queue: { concurrency: 1, maxQueued: 2, retryAfterSeconds: 7 } });
  t.teardown(() => srv.close());
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push((await submit(srv.url, { command: 'sleep 30', timeoutSeconds: 60 })).id);
  const before = (await api(srv.url, 'GET', '/v1/tasks?limit=100')).json.tasks.length;
  const r = await api(srv.url, 'POST', '/v1/tasks', { command: 'echo too-many', workspace: { files: { 'a.txt': 'x' } } });
  t.equal(r.status, 429);
  t.equal(r.headers.get('retry-after'), '7');
  t.match(r.json, { error: { code: 'QUEUE_FULL', details: { queued: 2, limit: 2 } } });
  t.equal((await api(srv.url, 'GET', '/v1/tasks?limit=100')).json.tasks.length, before, 'no task was recorded');
  const { readdirSync } = await import('node:fs');
  // Each workspace is an image (<id>.img) plus its mount point (<id>): count the images.
  t.equal(readdirSync(`${srv.dataDir}/workspaces`).filter((n) => n.endsWith('.img')).length, 3, 'no workspace was created for the refused task');
  for (const id of ids) await api(srv.url, 'POST', `/v1/tasks/${id}/cancel`);
  for (const id of ids) t.equal((await waitDone(srv.url, id, 20_000)).status, 'cancelled');
});

t.test('a burst of concurrent tasks never exceeds the concurrency limit', async (t) => {
  const srv = await startTestServer({ queue: { concurrency: 2, maxQueued: 100 } });
  t.teardown(() => srv.close());
  let maxRunning = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const running = (await api(srv.url, 'GET', '/v1/tasks?status=running&limit=100')).json.tasks.length;
      maxRunning = Math.max(maxRunning, running);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const submitted = await Promise.all(Array.from({ length: 8 }, (_, i) => submit(srv.url, { command: `sleep 0.4; echo ${i}` })));
  const tasks = await Promise.all(submitted.map((s) => waitDone(srv.url, s.id)));
  polling = false;
  await poller;
  t.ok(tasks.every((x) => x.status === 'succeeded'), 'all tasks ran');
  t.ok(maxRunning >= 1 && maxRunning <= 2, `observed at most 2 running (saw ${maxRunning})`);
  // The recorded intervals tell the same: at no start time were more than 2 tasks inside their run.
  const spans = tasks.map((x) => [Date.parse(x.startedAt), Date.parse(x.finishedAt)] as const);
  const overlap = Math.max(...spans.map(([s]) => spans.filter(([a, b]) => a <= s && s < b).length));
  t.ok(overlap <= 2, `recorded runs overlap at most 2 deep (saw ${overlap})`);
});

t.test('tasks on a busy workspace wait without blocking the tasks behind them', async (t) => {
  const srv = await startTestServer({ queue: { concurrency: 2 } });
  t.teardown(() => srv.close());
  const ws = await api(srv.url, 'POST', '/v1/workspaces', { files: { 'n.txt': '0' } });
  t.equal(ws.status, 201);
  const a = await submit(srv.url, { command: 'sleep 3; echo a >> log.txt', workspace: { id: ws.json.id } });
  const b = await submit(srv.url, { command: 'echo b >> log.txt; cat log.txt', workspace: { id: ws.json.id } });
  const c = await submit(srv.url, { command: 'echo c' });
  const tc = await waitDone(srv.url, c.id);
  const ta = await waitDone(srv.url, a.id);
  const tb = await waitDone(srv.url, b.id);
  // A task is running from the moment it leaves the queue (before its container exists).
  t.ok(Date.parse(tc.startedAt) < Date.parse(ta.finishedAt), 'c, on its own workspace, started while a held the workspace: it did not wait behind b');
  t.ok(Date.parse(tb.startedAt) >= Date.parse(ta.finishedAt), 'b started only after a finished on the shared workspace');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${b.id}/logs`)).text, 'a\nb\n', 'b saw a\'s change: the workspace outlives a task');
});
