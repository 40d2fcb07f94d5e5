import t from 'tap';
import { TaskQueue, type TenantQueueLimits } from '../../src/tasks/queue.js';

type Item = { id: string; workspaceId: string; tenant: string };
const item = (tenant: string, n: number, workspaceId = `${tenant}-w${n}`): Item => ({ id: `${tenant}${n}`, workspaceId, tenant });
const ids = (xs: Item[]) => xs.map((x) => x.id);

t.test('a tenant with many queued tasks does not hold back another tenant\'s first task', async (t) => {
  const q = new TaskQueue<Item>(1, 1000);
  for (let i = 1; i <= 100; i++) q.push(item('a', i));
  q.push(item('b', 1));
  const order: string[] = [];
  for (let i = 0; i < 6; i++) {
    const started = q.takeRunnable();
    t.equal(started.length, 1, 'concurrency 1: one start at a time');
    order.push(...ids(started));
    q.done(started[0]!.id);
  }
  t.same(order, ['a1', 'b1', 'a2', 'a3', 'a4', 'a5'], "b's first task starts second, not 101st; a's run in order");
});

t.test('round-robin across tenants, FIFO within each, concurrency bounds the total', async (t) => {
  const q = new TaskQueue<Item>(4, 1000);
  for (const [tenant, n] of [['a', 3], ['b', 2], ['c', 1]] as const) for (let i = 1; i <= n; i++) q.push(item(tenant, i));
  t.same(ids(q.takeRunnable()), ['a1', 'b1', 'c1', 'a2'], 'one per tenant in turn until the slots are taken');
  t.equal(q.runningCount, 4);
  t.same(q.takeRunnable(), [], 'no slot free');
  q.done('c1');
  t.same(ids(q.takeRunnable()), ['b2'], 'b is ahead of a (a was served last)');
  q.done('a1');
  t.same(ids(q.takeRunnable()), ['a3']);
  t.equal(q.queuedCount, 0);
});

t.test('a tenant at maxRunning waits without blocking the others', async (t) => {
  const limits: Record<string, TenantQueueLimits> = { a: { maxRunning: 1, maxQueued: 10 }, b: { maxRunning: 5, maxQueued: 10 } };
  const q = new TaskQueue<Item>(4, 1000, (tenant) => limits[tenant]!);
  q.push(item('a', 1));
  q.push(item('a', 2));
  q.push(item('b', 1));
  q.push(item('b', 2));
  t.same(ids(q.takeRunnable()), ['a1', 'b1', 'b2'], 'a gets one slot, b the rest it has tasks for');
  t.same(q.tenantCounts('a'), { queued: 1, running: 1 });
  q.done('b1');
  t.same(q.takeRunnable(), [], "a free slot, but a is at its maxRunning");
  q.done('a1');
  t.same(ids(q.takeRunnable()), ['a2'], 'a runs its next once its own task ended');
});

t.test('the per-workspace rule holds: a busy workspace lets the tenant\'s later tasks pass', async (t) => {
  const q = new TaskQueue<Item>(4, 1000);
  q.push(item('a', 1, 'shared'));
  q.push(item('a', 2, 'shared'));
  q.push(item('a', 3));
  q.push(item('b', 1, 'shared'));
  t.same(ids(q.takeRunnable()), ['a1', 'a3'], 'a2 and b1 wait for the shared workspace');
  q.done('a1');
  t.same(ids(q.takeRunnable()), ['b1'], 'b is served before a (a was served last); a2 waits again');
  q.done('b1');
  t.same(ids(q.takeRunnable()), ['a2']);
});

t.test('roomFor: the tenant limit (maxQueued beyond its run slots) before the whole queue', async (t) => {
  const limits: Record<string, TenantQueueLimits> = { a: { maxRunning: 1, maxQueued: 1 }, b: { maxRunning: 10, maxQueued: 10 } };
  const q = new TaskQueue<Item>(2, 3, (tenant) => limits[tenant]!);
  t.equal(q.roomFor('a'), null);
  q.push(item('a', 1));
  q.takeRunnable();
  t.equal(q.roomFor('a'), null, 'running 1: one may still wait');
  q.push(item('a', 2));
  t.equal(q.roomFor('a'), 'tenant', 'running 1 and 1 waiting: a is at its limit');
  t.equal(q.roomFor('b'), null, 'b is not');
  q.push(item('b', 1));
  q.push(item('b', 2));
  q.push(item('b', 3));
  t.same(ids(q.takeRunnable()), ['b1'], 'the second slot goes to b (a is at its maxRunning)');
  t.equal(q.queuedCount, 3);
  t.equal(q.roomFor('b'), 'queue', 'three waiting and no slot free: the whole queue is full');
  t.equal(q.roomFor('a'), 'tenant', "a's own limit is named first");
  t.ok(q.remove('a2'));
  t.same(q.tenantCounts('a'), { queued: 0, running: 1 });
  t.notOk(q.remove('a2'));
});
