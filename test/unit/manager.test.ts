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
