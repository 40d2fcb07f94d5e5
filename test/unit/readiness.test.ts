// Readiness over a fake engine: it fails while the engine is unreachable or its probe container
// fails, and comes back by itself once the engine works again (a failed probe is retried soon,
// not after the whole probe TTL).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { parseConfig } from '../../src/config/load.js';
import { Readiness } from '../../src/readiness.js';
import { EngineError, type ContainerEngine, type SandboxHandlers } from '../../src/runtime/engine.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-ready-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

function fakeEngine() {
  const state = { reachable: true, startFails: false, starts: 0 };
  const engine: Partial<ContainerEngine> = {
    async ping() {
      if (!state.reachable) throw new EngineError('connect ENOENT', true);
    },
    async imagePresent() {
      if (!state.reachable) throw new EngineError('connect ENOENT', true);
      return true;
    },
    async versions() {
      return { podman: '4.3.1', runc: null, runsc: null };
    },
    async start(_shape, _job, handlers: SandboxHandlers) {
      state.starts++;
      if (state.startFails) throw new EngineError('the engine went away while creating the container');
      handlers.onOutput('stdout', Buffer.from('65532\n'));
      return {
        containerId: 'c1',
        exit: Promise.resolve({ exitCode: 0, oomKills: 0, finishedAt: null, vanished: false }),
        writeStdin: () => false,
        endStdin: () => undefined,
        stop: async () => undefined,
        detach: async () => undefined,
      };
    },
  };
  return { state, engine: engine as ContainerEngine };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('unreachable, then a failed probe, then recovery without a restart', async (t) => {
  const { state, engine } = fakeEngine();
  const readiness = new Readiness(parseConfig({}), engine, join(dir, 'probe'), pino({ level: 'silent' }), 30_000, 200);
  t.equal((await readiness.check()).ready, true, 'ready at first');

  state.reachable = false;
  const down = await readiness.check();
  t.match(down, { ready: false, engine: { reachable: false } });

  // The engine answers again but its first container start fails (it is still coming up).
  state.reachable = true;
  state.startFails = true;
  t.equal((await readiness.check(true)).ready, false, 'a failed probe: not ready');
  state.startFails = false;
  t.equal((await readiness.check()).ready, false, 'right after, the failure is still what it knows');
  await sleep(300);
  const back = await readiness.check();
  t.equal(back.ready, true, 'ready again, well within the 30 s probe TTL');
  const starts = state.starts;
  await readiness.check();
  t.equal(state.starts, starts, 'a successful probe is cached for the TTL');
});
