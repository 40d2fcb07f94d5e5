import { readdirSync, readFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import Docker from 'dockerode';
import { pino } from 'pino';
import { fromInstall } from '../../src/paths.js';
import { OwnedPodmanService } from '../../src/runtime/service.js';
import { warmServers } from './paths.js';

/** Host processes whose command line contains `needle` (the host sees container processes). */
export function hostProcesses(needle: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle)) pids.push(Number(name));
    } catch {
      // the process went away while we looked
    }
  }
  return pids;
}

/** Containers (running or not) of the task: those with its label, straight from Podman, and pre-started ones handed to it. */
export async function taskContainers(socketPath: string, taskId: string): Promise<string[]> {
  const docker = new Docker({ socketPath });
  const list = await docker.listContainers({ all: true, filters: { label: [`io.sandboxshift.task=${taskId}`] } });
  const ids = list.map((c) => c.Id);
  // Pre-started containers a warm test server of this process handed the task (its claim names it).
  for (const w of warmServers.values()) {
    if (w.closed) continue;
    for (const c of await w.services.engine.listOurs()) if (c.taskId === taskId && !ids.includes(c.containerId)) ids.push(c.containerId);
  }
  return ids;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The task's containers (taskContainers) still there once they had up to `ms` to go (the server
 * removes a container after reporting its exit).
 */
export async function leftContainers(socketPath: string, taskId: string, ms = 10_000): Promise<string[]> {
  const until = Date.now() + ms;
  for (;;) {
    const ids = await taskContainers(socketPath, taskId);
    if (ids.length === 0 || Date.now() > until) return ids;
    await sleep(100);
  }
}

/** A Podman API service of the test's own (so that it can be stopped or abandoned at will). */
export function ownedPodmanService(socketPath: string, podmanBinary = 'podman', timeoutMs = 30_000): OwnedPodmanService {
  return new OwnedPodmanService(
    { podmanBinary, runtime: 'runc', socketPath, containersConf: fromInstall('deploy/containers.conf'), timeoutMs },
    pino({ level: 'silent' }),
  );
}

/** A loopback TCP port free at the moment of asking (a listener the test then opens on it). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
