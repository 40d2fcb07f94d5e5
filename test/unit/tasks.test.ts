import t from 'tap';
import { classifyExit } from '../../src/tasks/model.js';
import { TaskQueue } from '../../src/tasks/queue.js';
import { checkRelativePath } from '../../src/workspace/paths.js';

t.test('exit classification (DESIGN.md section 9)', async (t) => {
  t.same(classifyExit({ exitCode: 0, oomKilled: false }, null), { status: 'succeeded', reason: null });
  t.same(classifyExit({ exitCode: 3, oomKilled: false }, null), { status: 'failed', reason: null });
  t.same(classifyExit({ exitCode: 137, oomKilled: false }, null), { status: 'failed', reason: null }, 'a 137 we did not send is not oom');
  t.same(classifyExit({ exitCode: 137, oomKilled: true }, null), { status: 'failed', reason: 'oom' });
  t.same(classifyExit({ exitCode: 137, oomKilled: false }, 'timeout'), { status: 'timed_out', reason: 'timeout' });
  t.same(classifyExit({ exitCode: 0, oomKilled: false }, 'cancel'), { status: 'cancelled', reason: 'cancelled' });
  t.same(classifyExit({ exitCode: null, oomKilled: false }, null), { status: 'error', reason: 'engine_error' });
});

t.test('the queue: concurrency, queue room, busy workspaces skipped without blocking', async (t) => {
  const q = new TaskQueue<{ id: string; workspaceId: string }>(2, 3);
  q.push({ id: 'a', workspaceId: 'w1' });
  q.push({ id: 'b', workspaceId: 'w1' });
  q.push({ id: 'c', workspaceId: 'w2' });
  t.notOk(q.hasRoom() && q.queuedCount > 3);
  t.same(q.takeRunnable().map((x) => x.id), ['a', 'c'], 'b waits for w1; c runs past it');
  t.same(q.takeRunnable(), [], 'concurrency 2 reached');
  q.push({ id: 'd', workspaceId: 'w3' });
  q.done('a');
  t.same(q.takeRunnable().map((x) => x.id), ['b']);
  t.equal(q.queuedCount, 1);
  t.ok(q.remove('d'));
  t.notOk(q.remove('d'));
  q.push({ id: 'e', workspaceId: 'w4' });
  q.push({ id: 'f', workspaceId: 'w5' });
  q.push({ id: 'g', workspaceId: 'w6' });
  t.notOk(q.hasRoom(), 'three waiting fill a queue of 3');
});

t.test('relative workspace paths', async (t) => {
  const limits = { maxDepth: 3, maxPathBytes: 20 };
  t.same(checkRelativePath('a/b/c.txt', limits), ['a', 'b', 'c.txt']);
  t.throws(() => checkRelativePath('/etc/passwd', limits), { code: 'WORKSPACE_PATH_ESCAPE', details: { rule: 'absolute' } });
  t.throws(() => checkRelativePath('a/../../x', limits), { code: 'WORKSPACE_PATH_ESCAPE', details: { rule: 'dot_dot' } });
  t.throws(() => checkRelativePath('a/./b', limits), { code: 'WORKSPACE_PATH_INVALID' });
  t.throws(() => checkRelativePath('', limits), { code: 'WORKSPACE_PATH_INVALID' });
  t.throws(() => checkRelativePath('a\0b', limits), { code: 'WORKSPACE_PATH_INVALID', details: { rule: 'nul_byte' } });
  t.throws(() => checkRelativePath('a/b/c/d', limits), { code: 'WORKSPACE_PATH_TOO_DEEP', details: { limit: 3 } });
  t.throws(() => checkRelativePath('x'.repeat(21), limits), { code: 'WORKSPACE_PATH_INVALID', details: { rule: 'too_long', limit: 20 } });
});
