import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino, type DestinationStream } from 'pino';
import { buildApp } from '../../src/app.js';
import { parseConfig } from '../../src/config/load.js';
import { IMAGE_RECORD_FILE } from '../../src/detection/record.js';
import { openapiDocument } from '../../src/http/openapi.js';
import { logOptions } from '../../src/logging.js';
import { installDir } from '../../src/paths.js';
import { startServices, type Services } from '../../src/services.js';
import { unmountAllUnder } from '../../src/workspace/storage.js';
import { isWarm, WARM_POOL_SIZE, warmProcesses, warmServers } from './paths.js';

export const TEST_LABEL = { 'io.sandboxshift.test': '1' };

/**
 * A data directory that outlives one server (restart tests start several on it), removed at the
 * test's end with whatever workspace mounts are left in it.
 */
export function keptDataDir(t: { teardown(fn: () => unknown): void }, prefix: string): string {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(async () => {
    await unmountAllUnder(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
  });
  return dataDir;
}

export interface TestServer {
  url: string;
  wsUrl: string;
  services: Services;
  dataDir: string;
  /**
   * Mounts a workspace so that the test can look at its files on the host, at the returned
   * directory (`<dataDir>/workspaces/<id>`). Each workspace is its own filesystem, mounted only
   * while in use: this holds it until the server closes (so a DELETE of it answers 409).
   */
  mountWorkspace(id: string): Promise<string>;
  /** Drops every open WebSocket from the server side (no close handshake), as a lost connection would. */
  dropStreams(): number;
  close(): Promise<void>;
}

export type Overrides = Record<string, unknown>;

export function merge(base: Overrides, over: Overrides): Overrides {
  const out: Overrides = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && typeof base[k] === 'object' ? merge(base[k] as Overrides, v as Overrides) : v;
  }
  return out;
}

/** Where setup recorded the machine's image tags (SANDBOXSHIFT_DATA_DIR as in scripts/images.sh). */
export function imageRecordPath(): string {
  return join(process.env.SANDBOXSHIFT_DATA_DIR ?? join(installDir(), '.sandboxshift-data'), IMAGE_RECORD_FILE);
}

/**
 * A host UID range of 64 slots per data directory (the same for a restart on it), so that test
 * servers running at once on this machine do not hand out the same host UIDs.
 */
function testUidRange(dataDir: string): { firstHostUid: number; slots: number } {
  const index = createHash('sha256').update(dataDir).digest().readUInt32BE(0) % 512;
  return { firstHostUid: 0x70000000 + index * 64 * 65536, slots: 64 };
}

/** Per-task host UIDs as shipped (on, pooled members included), in the data directory's range. */
function testUserNamespaces(dataDir: string): { enabled: boolean; firstHostUid: number; slots: number } {
  return { enabled: true, ...testUidRange(dataDir) };
}

/**
 * The real app on a real port: real Podman (the suite's API socket from scripts/test.sh, or a
 * service of its own when none is given), a temporary data directory with a real SQLite file.
 */
export async function startTestServer(overrides: Overrides = {}, opts: { logTo?: DestinationStream; uiDir?: string } = {}): Promise<TestServer> {
  // A caller that passes its own dataDir keeps it (restart tests); otherwise it is temporary.
  const ownData = typeof overrides.dataDir !== 'string';
  const dataDir = ownData ? mkdtempSync(join(tmpdir(), 'sbx-test-')) : (overrides.dataDir as string);
  // The image record scripts/setup.sh wrote for this machine (the tags its image build really
  // produced), so a temporary data directory sees the same image table as `npm start`.
  const record = imageRecordPath();
  if (ownData && existsSync(record)) copyFileSync(record, join(dataDir, IMAGE_RECORD_FILE));
  const socket = process.env.SANDBOXSHIFT_TEST_SOCKET ?? null;
  // Tests stop their tasks with the server unless they ask for the shipped default (leaving
  // them running for the next start): a test's containers must not outlive it.
  // No warm pool unless the test asks for one (its pre-started containers cost every server a
  // few starts) or the file runs on the warm path (see paths.ts).
  const pool = { size: isWarm() ? WARM_POOL_SIZE : 0 };
  const config = parseConfig(
    merge({ dataDir, listen: { port: 0 }, engine: { socket }, shutdown: { leaveRunning: false }, pool, sandbox: { userNamespaces: testUserNamespaces(dataDir) } }, overrides),
  );
  // The server's own logger options; `logTo` receives every line (tests that read the log).
  const log = opts.logTo
    ? pino(logOptions({ level: 'trace' }), opts.logTo)
    : pino(logOptions({ level: process.env.SANDBOXSHIFT_TEST_LOG ?? 'silent' }));
  const services = await startServices(config, log, { extraLabels: TEST_LABEL, env: {} });
  const app = await buildApp({ ...services, openapi: () => openapiDocument(), log, ...(opts.uiDir !== undefined ? { uiDir: opts.uiDir } : {}) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const held = new Set<string>();
  if (isWarm() && config.pool.size > 0) warmServers.set(`http://127.0.0.1:${port}`, { services, expected: 0 });
  return {
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}`,
    services,
    dataDir,
    async mountWorkspace(id: string) {
      if (!held.has(id)) {
        await services.workspaces.hold(id);
        held.add(id);
      }
      return services.workspaces.dir(id);
    },
    dropStreams() {
      const clients = [...app.websocketServer.clients];
      for (const c of clients) c.terminate();
      return clients.length;
    },
    async close() {
      const w = warmServers.get(`http://127.0.0.1:${port}`);
      if (w) w.closed = true;
      await services.drain();
      await app.close();
      await services.close();
      // Workspaces are loop mounts under the data dir: never recurse into a mounted one. A server
      // that left its tasks running keeps their mounts for the next start.
      if (!config.shutdown.leaveRunning) await unmountAllUnder(dataDir);
      if (ownData) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface ServerProcess {
  url: string;
  wsUrl: string;
  pid: number;
  /** Resolves with the exit code (or signal) once the process has ended. */
  exited: Promise<number | string>;
  kill(signal: NodeJS.Signals): void;
}

/**
 * The server in a child process (test/helpers/server-process.ts through the loader tap runs this
 * file with), on `dataDir`, so that a test can kill -9 it or send it SIGTERM.
 */
export async function startServerProcess(overrides: Overrides & { dataDir: string }): Promise<ServerProcess> {
  const socket = process.env.SANDBOXSHIFT_TEST_SOCKET ?? null;
  const config = merge(
    { listen: { port: 0 }, engine: { socket }, pool: { size: isWarm() ? WARM_POOL_SIZE : 0 }, sandbox: { userNamespaces: testUserNamespaces(overrides.dataDir) } },
    overrides,
  );
  const file = join(overrides.dataDir, 'test-server-config.json');
  mkdirSync(overrides.dataDir, { recursive: true });
  writeFileSync(file, JSON.stringify(config));
  const record = imageRecordPath();
  if (existsSync(record) && !existsSync(join(overrides.dataDir, IMAGE_RECORD_FILE))) copyFileSync(record, join(overrides.dataDir, IMAGE_RECORD_FILE));
  const entry = fileURLToPath(new URL('./server-process.ts', import.meta.url));
  const child = spawn(process.execPath, [...process.execArgv, entry, file], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | string>((r) => child.once('exit', (code, signal) => r(code ?? signal ?? -1)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) resolve((JSON.parse(line) as { url: string }).url);
    });
    void exited.then((code) => reject(new Error(`server process exited (${code}) before listening`)));
  });
  if (isWarm() && config.pool.size > 0) warmProcesses.add(url);
  return {
    url,
    wsUrl: url.replace(/^http/, 'ws'),
    pid: child.pid!,
    exited,
    kill: (signal) => child.kill(signal),
  };
}
