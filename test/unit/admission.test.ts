import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { AppError } from '../../src/errors.js';
import { planTask } from '../../src/tasks/admission.js';
import { TaskScheduler } from '../../src/tasks/scheduler.js';
import { createTaskBody } from '../../src/tasks/schemas.js';
import { pino } from 'pino';

const config = parseConfig({
  dataDir: '/nonexistent',
  images: {
    languages: { python: { image: 'sandboxshift/runtime-python:3.11', build: 'b' } },
    multi: null,
    default: 'python',
    markers: { 'requirements.txt': 'python' },
  },
});
const body = (b: Record<string, unknown>) => createTaskBody.parse({ command: 'true', ...b });
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof AppError ? err.code : String(err);
  }
  return null;
};

t.test("planTask: the workspace file supplies defaults, the request overrides, and what the task took from the file is listed", async (t) => {
  const file = 'sandbox:\n  timeout: 30\nworkspace:\n  readonly: true\nnetwork:\n  allow: [example.test]\n';
  const stored = planTask(body({}), { rootEntries: ['requirements.txt'], projectFile: file, stored: true }, config);
  t.match(stored, { timeoutSeconds: 30, readonly: true, network: { allow: ['example.test'] }, image: 'sandboxshift/runtime-python:3.11' });
  t.same(stored.detection.markers, ['requirements.txt']);
  t.same([...stored.fromFile].sort(), ['network.allow', 'sandbox.timeout', 'workspace.readonly']);
  const inline = planTask(body({ timeoutSeconds: 5, network: { allow: [] } }), { rootEntries: [], projectFile: file, stored: false }, config);
  t.match(inline, { timeoutSeconds: 5, readonly: true, network: { allow: [] } });
  t.same(inline.fromFile, [], 'inline files: workspace.readonly is applied but not listed (as the JSON path always did)');
});

t.test('planTask: the order clients see — limits, then the allowlist, then the image', async (t) => {
  const facts = { rootEntries: [], projectFile: null, stored: false };
  t.equal(codeOf(() => planTask(body({ timeoutSeconds: 10 ** 6, network: { allow: ['*'] }, image: 'nope' }), facts, config)), 'LIMIT_ABOVE_MAXIMUM');
  t.equal(codeOf(() => planTask(body({ network: { allow: ['*'] }, image: 'nope' }), facts, config)), 'EGRESS_PATTERN_TOO_BROAD');
  t.equal(codeOf(() => planTask(body({ image: 'nope' }), facts, config)), 'IMAGE_UNKNOWN');
  t.equal(codeOf(() => planTask(body({}), { ...facts, projectFile: 'sandbox: [' }, config)), 'PROJECT_FILE_INVALID');
});

t.test('TaskScheduler: QUEUE_FULL with Retry-After once the run slots and the queue are taken; a withdrawn task frees its place', async (t) => {
  const c = parseConfig({ dataDir: '/nonexistent', queue: { concurrency: 1, maxQueued: 1, retryAfterSeconds: 7 } });
  const started: string[] = [];
  const scheduler = new TaskScheduler(c, async (task: { id: string; workspaceId: string; tenant: string }) => void started.push(task.id), pino({ level: 'silent' }));
  // The first run never settles: it keeps the one slot.
  const blocked = new TaskScheduler(c, () => new Promise<void>(() => undefined), pino({ level: 'silent' }));
  blocked.enqueue({ id: 'a', workspaceId: 'w1', tenant: 'default' });
  blocked.enqueue({ id: 'b', workspaceId: 'w2', tenant: 'default' });
  const err = (() => {
    try {
      blocked.requireRoom('default');
    } catch (e) {
      return e as AppError;
    }
    return null;
  })();
  t.match(err, { code: 'QUEUE_FULL', details: { queued: 1, limit: 1 }, headers: { 'retry-after': '7' } });
  t.same(blocked.stats(), { queued: 1, running: 1 });
  t.ok(blocked.withdraw('b'));
  t.doesNotThrow(() => blocked.requireRoom('default'));
  scheduler.enqueue({ id: 'x', workspaceId: 'w', tenant: 'default' });
  await new Promise((r) => setImmediate(r));
  t.same(started, ['x']);
});

t.test('TaskScheduler: TENANT_QUEUED_LIMIT with Retry-After for a tenant at its limits, while others are admitted', async (t) => {
  const c = parseConfig({ dataDir: '/nonexistent', queue: { concurrency: 4, retryAfterSeconds: 3 }, tenants: { overrides: { a: { maxRunning: 1, maxQueued: 1 } } } });
  const blocked = new TaskScheduler(c, () => new Promise<void>(() => undefined), pino({ level: 'silent' }));
  blocked.enqueue({ id: 'a1', workspaceId: 'w1', tenant: 'a' });
  blocked.enqueue({ id: 'a2', workspaceId: 'w2', tenant: 'a' });
  t.same(blocked.stats(), { queued: 1, running: 1 }, 'a2 waits: a is at its maxRunning, though slots are free');
  let err: AppError | null = null;
  try {
    blocked.requireRoom('a');
  } catch (e) {
    err = e as AppError;
  }
  t.match(err, { code: 'TENANT_QUEUED_LIMIT', details: { tenant: 'a', queued: 1, running: 1, maxQueued: 1, maxRunning: 1 }, headers: { 'retry-after': '3' } });
  t.doesNotThrow(() => blocked.requireRoom('b'), 'another tenant is admitted');
  blocked.enqueue({ id: 'b1', workspaceId: 'w3', tenant: 'b' });
  t.same(blocked.stats(), { queued: 1, running: 2 }, "and b's task starts");
});
