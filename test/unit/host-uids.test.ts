import t from 'tap';
import { HostUidExhaustedError, HostUidPool, idMappingFor } from '../../src/runtime/host-uids.js';
import { ownSigpendingLimit, taskSigpending } from '../../src/runtime/kernel-limits.js';

const FIRST = 0x70000000;
const uidOf = (slot: number) => FIRST + slot * 65536 + 65532;

t.test('each task gets a slot of its own, the same on a second call, free again once released', async (t) => {
  const p = new HostUidPool(FIRST, 3);
  t.equal(p.allocate('a'), uidOf(0));
  t.equal(p.allocate('b'), uidOf(1));
  t.equal(p.allocate('a'), uidOf(0), 'a task asking again keeps its slot');
  t.equal(p.allocate('c'), uidOf(2));
  t.throws(() => p.allocate('d'), HostUidExhaustedError, 'no slot shared when all are taken');
  p.release('b');
  t.equal(p.allocate('d'), uidOf(1), 'a released slot is reused');
  p.release('nobody');
  t.equal(p.inUse, 3);
  t.same(idMappingFor(uidOf(1)), { containerId: 0, hostId: FIRST + 65536, size: 65536 }, 'container 65532 lands on the task UID');
});

t.test("an adopted task keeps its container's slot; a new task never gets it", async (t) => {
  const p = new HostUidPool(FIRST, 4);
  t.ok(p.adopt('kept', uidOf(2)));
  t.ok(p.adopt('kept', uidOf(2)), 'idempotent');
  t.equal(p.allocate('new1'), uidOf(0));
  t.equal(p.allocate('new2'), uidOf(1));
  t.equal(p.allocate('new3'), uidOf(3), 'slot 2 is skipped');
  t.notOk(p.adopt('other', uidOf(2)), 'a slot already held');
  t.ok(p.adopt('y', uidOf(4)), 'a UID outside the range (changed between runs) holds no slot');
  t.equal(p.inUse, 4);
  t.ok(p.adopt('z', 65532));
});

t.test("a task handed a pool member takes over the member's slot; its own is freed", async (t) => {
  const p = new HostUidPool(FIRST, 3);
  t.equal(p.allocate('slt_a'), uidOf(0), 'the member, pre-started');
  t.equal(p.allocate('task'), uidOf(1), 'the task, as it would start cold');
  t.equal(p.free, 1);
  t.equal(p.handOver('slt_a', 'task'), uidOf(0), "the task runs as the member's UID");
  t.equal(p.free, 2, "the task's own slot is free again");
  t.equal(p.allocate('task'), uidOf(0), 'the task holds the member slot now');
  t.equal(p.allocate('slt_b'), uidOf(1), 'a new member gets the freed slot');
  t.equal(p.handOver('slt_a', 'other'), null, 'a member that holds nothing hands nothing over');
  t.equal(p.allocate('other'), uidOf(2), '...and the task keeps nothing it did not have');
  p.release('task');
  t.equal(p.free, 1, 'released with the task');
});

t.test('the range must fit below the largest UID', async (t) => {
  t.throws(() => new HostUidPool(2 ** 32 - 65536, 2));
  t.throws(() => new HostUidPool(FIRST, 0));
  t.doesNotThrow(() => new HostUidPool(2 ** 32 - 1 - 65536, 1));
});

t.test('RLIMIT_SIGPENDING per task: half of the host limit shared over the tasks at once', async (t) => {
  t.equal(taskSigpending(96364, 2), 24091);
  t.equal(taskSigpending(96364, 256), 188);
  t.equal(taskSigpending(10, 256), 1, 'never zero');
  t.ok((ownSigpendingLimit() ?? 0) > 0, 'read from /proc/self/limits');
  t.equal(ownSigpendingLimit('/nonexistent'), null);
});
