import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { parseConfig } from '../../src/config/load.js';
import type { ContainerEngine, RunningSandbox, SandboxExit } from '../../src/runtime/engine.js';
import { TaskManager } from '../../src/tasks/manager.js';
import { createTaskBody } from '../../src/tasks/schemas.js';
import { MemoryStore, MemoryWorkspaces } from '../helpers/memory-ports.js';

/** An engine whose start() resolves only when the test says so (a hung or slow Podman). */
class SlowEngine implements ContainerEngine {
  release: (() => void) | null = null;
  stops = 0;
  async ping() {}
  async imagePresent() {
    return true;
  }
  async imageLabels() {
    return {};
  }
  async listOurs() {
    return [];
  }
  async adopt() {
    return null;
  }
  async remove() {}
  async versions() {
    return { podman: null, runc: null, runsc: null };
  }
  start(): Promise<RunningSandbox> {
    return new Promise((resolve) => {
      this.release = () => {
        let exit!: (e: SandboxExit) => void;
        const sandbox: RunningSandbox = {
          containerId: 'fake',
          exit: new Promise((r) => (exit = r)),
          writeStdin: () => false,
          endStdin: () => undefined,
          stop: async () => {
            this.stops++;
            exit({ exitCode: 137, oomKills: 0, finishedAt: null, vanished: false });
          },
          detach: async () => undefined,
        };
        resolve(sandbox);
      };
    });
  }
}

function setup(t: Test, leaveRunning = false) {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-manager-'));
  const config = parseConfig({ dataDir: dir, shutdown: { leaveRunning } });
  const store = new MemoryStore();
  const engine = new SlowEngine();
  const manager = new TaskManager(config, engine, store, new MemoryWorkspaces(store, config.workspaces), join(dir, 'tasks'), pino({ level: 'silent' }));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return { manager, engine };
}

const OWNER = { tenant: 'default', keyId: null };

const until = async (cond: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
};

t.test('a start that hangs past the timeout ends timed_out; the late sandbox is stopped', async (t) => {
  const { manager, engine } = setup(t);
  const task = await manager.submit(createTaskBody.parse({ command: 'true', timeoutSeconds: 1 }), OWNER);
  await until(() => manager.get(task.id).status === 'timed_out');
  t.match(manager.get(task.id), { status: 'timed_out', reason: 'timeout', exitCode: null });
  engine.release!();
  await until(() => engine.stops === 1);
  t.equal(engine.stops, 1, 'the sandbox that started too late was stopped at once');
});

t.test('cancel while the container is being created', async (t) => {
  const { manager, engine } = setup(t);
  const task = await manager.submit(createTaskBody.parse({ command: 'true' }), OWNER);
  await until(() => manager.get(task.id).status === 'running');
  manager.cancel(task.id);
  await until(() => manager.get(task.id).status === 'cancelled');
  t.match(manager.get(task.id), { status: 'cancelled', reason: 'cancelled', exitCode: null });
  engine.release!();
  await until(() => engine.stops === 1);
});

t.test('shutdown (shutdown.leaveRunning false) while the container is being created does not wait for the engine', async (t) => {
  const { manager, engine } = setup(t);
  const task = await manager.submit(createTaskBody.parse({ command: 'true' }), OWNER);
  await until(() => manager.get(task.id).status === 'running');
  const before = Date.now();
  await manager.close(500);
  t.ok(Date.now() - before < 5000, 'close gives up on a hung engine after its deadline');
  t.match(manager.get(task.id), { status: 'error', reason: 'lost' });
  engine.release!();
  await until(() => engine.stops === 1);
});

t.test('a task a ready pre-started sandbox takes is admitted without asking the engine for its image', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-manager-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = parseConfig({ dataDir: dir });
  const store = new MemoryStore();
  const engine = new SlowEngine();
  // Every sandbox starts at once and exits 0.
  engine.start = async () => ({
    containerId: 'fake',
    exit: Promise.resolve({ exitCode: 0, oomKills: 0, finishedAt: null, vanished: false }),
    writeStdin: () => false,
    endStdin: () => undefined,
    stop: async () => undefined,
    detach: async () => undefined,
  });
  let inspected = 0;
  engine.imagePresent = async () => {
    inspected++;
    return true;
  };
  const workspaces = new MemoryWorkspaces(store, config.workspaces);
  let members = 1;
  const warm = {
    ready: () => members > 0,
    // A member whose empty workspace becomes the task's; `members` 0 after the first.
    reserve: (_s: unknown, markers: string[], tenant: string) => {
      if (members === 0) return null;
      members--;
      const now = new Date().toISOString();
      const id = `ws_spare${members}`;
      store.insertWorkspace({ id, tenant, createdAt: now, files: 0, bytes: 0, markers, lastUsedAt: now, usedBytes: 0, quotaBytes: 0, ephemeral: true });
      return id;
    },
  };
  const manager = new TaskManager(config, engine, store, workspaces, join(dir, 'tasks'), pino({ level: 'silent' }), undefined, null, undefined, warm);
  const a = await manager.submit(createTaskBody.parse({ command: 'true' }), OWNER);
  t.equal(a.workspaceId, 'ws_spare0', 'the pre-started sandbox’s workspace');
  t.equal(inspected, 0, 'no image inspect for the warm task');
  const ended = (id: string) => until(() => manager.get(id).status === 'succeeded');
  await ended(a.id);
  // No member left: the next task is a cold one, and its image is asked for.
  const b = await manager.submit(createTaskBody.parse({ command: 'true' }), OWNER);
  t.equal(inspected, 1, 'the cold task’s image was asked for');
  await ended(b.id);
  // A member that is ready at admission but gone when it is to be taken: asked for after all.
  warm.ready = () => true;
  const c = await manager.submit(createTaskBody.parse({ command: 'true' }), OWNER);
  t.equal(inspected, 2, 'a vouched-for task whose member went is asked for too');
  await ended(c.id);
  // A task with inline files never takes a member: always asked for.
  await manager.submit(createTaskBody.parse({ command: 'true', workspace: { files: { 'a.txt': 'x' } } }), OWNER);
  t.equal(inspected, 3);
  await manager.close(1000);
});
