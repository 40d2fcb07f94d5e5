import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import type { EgressDecision } from '../../src/egress/decisions.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { TaskLog } from '../../src/streaming/tasklog.js';
import type { TaskRecord, TaskStatus } from '../../src/tasks/model.js';
import { RetentionSweeper } from '../../src/tasks/retention.js';
import { SqliteTaskStore } from '../../src/tasks/sqlite-store.js';

const DAY = 86_400_000;
const NOW = new Date('2026-06-01T12:00:00.000Z');
const daysAgo = (d: number) => new Date(NOW.getTime() - d * DAY).toISOString();

function record(id: string, status: TaskStatus, finishedDaysAgo: number | null): TaskRecord {
  return {
    id,
    status,
    command: 'true',
    setup: null,
    fromProjectFile: [],
    image: { name: 'sandboxshift/runtime-python:3.11', markers: [] },
    workspaceId: 'ws_x',
    workspaceReadonly: false,
    createdAt: daysAgo(100),
    startedAt: null,
    finishedAt: finishedDaysAgo === null ? null : daysAgo(finishedDaysAgo),
    durationMs: null,
    exitCode: null,
    reason: null,
    error: null,
    output: { stdoutBytes: 0, stderrBytes: 0, truncated: false },
    resources: { cpus: 1, memoryMb: 512, pids: 256 },
    timeoutSeconds: 300,
    stdin: false,
    network: { allow: [], unrestricted: false },
    env: {},
  };
}

const decision: EgressDecision = {
  time: daysAgo(50),
  host: 'example.test',
  port: 443,
  allowed: false,
  reason: 'not_allowlisted',
  address: null,
  bytesUp: 0,
  bytesDown: 0,
};

function setup(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-retention-'));
  const db = new SqliteStore(join(dir, 'db.sqlite'));
  const store = new SqliteTaskStore(db);
  const logsDir = join(dir, 'tasks');
  t.teardown(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /** A task as the server leaves it: record, log directory with frames, egress decisions (one dropped). */
  const add = (id: string, status: TaskStatus, finishedDaysAgo: number | null) => {
    store.insertTask(record(id, status, finishedDaysAgo));
    const log = TaskLog.open(join(logsDir, id));
    log.append({ type: 'status', status: 'queued' });
    log.append({ type: 'stdout', data: 'hello\n' });
    log.release();
    db.addEgressDecision(id, decision, 1);
    db.addEgressDecision(id, decision, 1);
  };
  const sweeper = new RetentionSweeper(store, logsDir, { taskDays: 30, sweepIntervalSeconds: 3600 }, pino({ level: 'silent' }), {
    now: () => NOW,
  });
  const kept = (id: string) => store.getTask(id) !== null && existsSync(join(logsDir, id)) && store.egressDecisions(id).decisions.length === 1;
  const gone = (id: string) => {
    const e = store.egressDecisions(id);
    return store.getTask(id) === null && !existsSync(join(logsDir, id)) && e.decisions.length === 0 && e.dropped === 0;
  };
  return { store, logsDir, add, sweeper, kept, gone };
}

t.test('a sweep removes finished tasks past taskDays with their log and egress decisions, and keeps the rest', async (t) => {
  const { add, sweeper, kept, gone } = setup(t);
  add('tsk_old_ok', 'succeeded', 40);
  add('tsk_old_failed', 'failed', 31);
  add('tsk_old_error', 'error', 365);
  add('tsk_recent', 'succeeded', 29);
  add('tsk_yesterday', 'cancelled', 1);
  add('tsk_queued', 'queued', null);
  add('tsk_running', 'running', null);
  // Never removed while running, whatever its record says about a finish time.
  add('tsk_running_stale', 'running', 90);

  const removed = await sweeper.sweepNow();
  t.same(removed.sort(), ['tsk_old_error', 'tsk_old_failed', 'tsk_old_ok']);
  for (const id of removed) t.ok(gone(id), `${id}: record, log directory and egress decisions removed`);
  for (const id of ['tsk_recent', 'tsk_yesterday', 'tsk_queued', 'tsk_running', 'tsk_running_stale']) {
    t.ok(kept(id), `${id} kept with its log and decisions`);
  }
  t.same(await sweeper.sweepNow(), [], 'a second sweep finds nothing more');
});

t.test('log directories without a record are removed once older than the cutoff', async (t) => {
  const { logsDir, sweeper } = setup(t);
  const stray = join(logsDir, 'tsk_stray');
  const fresh = join(logsDir, 'tsk_being_submitted');
  mkdirSync(stray, { recursive: true });
  mkdirSync(fresh, { recursive: true });
  const old = new Date(daysAgo(45));
  utimesSync(stray, old, old);
  utimesSync(fresh, NOW, NOW);
  await sweeper.sweepNow();
  t.notOk(existsSync(stray), 'an old directory with no record is removed');
  t.ok(existsSync(fresh), 'a recent one is kept (its record may be about to be written)');
});

t.test('more finished tasks than one batch are all removed in one sweep', async (t) => {
  const { store, sweeper } = setup(t);
  for (let i = 0; i < 1234; i++) store.insertTask(record(`tsk_bulk${i}`, 'succeeded', 60));
  store.insertTask(record('tsk_keep', 'succeeded', 2));
  t.equal((await sweeper.sweepNow()).length, 1234);
  t.equal(store.listTasks({ limit: 10 }).tasks.map((x) => x.id).join(), 'tsk_keep');
});

t.test('start() runs a sweep at once', async (t) => {
  const { add, sweeper, gone } = setup(t);
  add('tsk_old', 'succeeded', 40);
  sweeper.start();
  t.teardown(() => sweeper.stop());
  await sweeper.idle();
  t.ok(gone('tsk_old'), 'the start-up sweep removed the old task');
});
