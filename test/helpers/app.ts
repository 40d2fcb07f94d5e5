import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/app.js';
import type { Config } from '../../src/config/schema.js';
import { parseConfig } from '../../src/config/load.js';
import { openapiDocument } from '../../src/http/openapi.js';
import { Readiness } from '../../src/readiness.js';
import { TaskManager } from '../../src/tasks/manager.js';
import { SecretVault } from '../../src/tasks/vault.js';
import { logOptions } from '../../src/logging.js';
import { Workspaces } from '../../src/workspace/workspaces.js';
import { FakeEngine } from './fake-engine.js';
import { MemoryStore, MemoryWorkspaces } from './memory-ports.js';
import { merge, type Overrides } from './server.js';

export interface TestApp {
  /** The real HTTP app (buildApp), driven with app.inject(); nothing listens. */
  app: FastifyInstance;
  config: Readonly<Config>;
  engine: FakeEngine;
  store: MemoryStore;
  workspaces: MemoryWorkspaces;
  manager: TaskManager;
  /** Task logs are real files under here (a temporary directory). */
  dataDir: string;
  close(): Promise<void>;
}

/**
 * The real app over a FakeEngine and in-memory ports: the HTTP layer, admission, the lifecycle
 * and the scheduler are the server's own; no container, mount or database is involved. For checks
 * that need none (validation, error mapping); what a container does is tested against Podman.
 */
export async function buildTestApp(opts: { config?: Overrides; engine?: FakeEngine; uiDir?: string } = {}): Promise<TestApp> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sbx-app-'));
  const config = parseConfig(merge({ dataDir, shutdown: { leaveRunning: false } }, opts.config ?? {}));
  const log = pino(logOptions({ level: process.env.SANDBOXSHIFT_TEST_LOG ?? 'silent' }));
  const engine = opts.engine ?? new FakeEngine();
  const store = new MemoryStore();
  const workspaces = new MemoryWorkspaces(store, config.workspaces);
  const vault = new SecretVault(join(dataDir, 'secrets'), join(dataDir, 'secrets.key'));
  const manager = new TaskManager(config, engine, store, workspaces, join(dataDir, 'tasks'), log, undefined, null, undefined, null, vault);
  // The workspace routes read the same records; nothing here creates a filesystem.
  const routesWorkspaces = new Workspaces(join(dataDir, 'workspaces'), store, config.workspaces);
  const app = await buildApp({
    config,
    manager,
    workspaces: routesWorkspaces,
    intakeTmpDir: join(dataDir, 'tmp'),
    readiness: new Readiness(config, engine, join(dataDir, 'probe'), log),
    openapi: () => openapiDocument(),
    log,
    ...(opts.uiDir ? { uiDir: opts.uiDir } : {}),
  });
  await app.ready();
  return {
    app,
    config,
    engine,
    store,
    workspaces,
    manager,
    dataDir,
    async close() {
      await manager.close(1000);
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
