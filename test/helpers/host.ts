import { readdirSync, readFileSync } from 'node:fs';
import Docker from 'dockerode';
import { pino } from 'pino';
import { fromInstall } from '../../src/paths.js';
import { OwnedPodmanService } from '../../src/runtime/service.js';

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

/** Containers (running or not) that carry the task's label, straight from Podman. */
export async function taskContainers(socketPath: string, taskId: string): Promise<string[]> {
  const docker = new Docker({ socketPath });
  const list = await docker.listContainers({ all: true, filters: { label: [`io.sandboxshift.task=${taskId}`] } });
  return list.map((c) => c.Id);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Podman API service of the test's own (so that it can be stopped or abandoned at will). */
export function ownedPodmanService(socketPath: string, podmanBinary = 'podman', timeoutMs = 30_000): OwnedPodmanService {
  return new OwnedPodmanService(
    { podmanBinary, runtime: 'runc', socketPath, containersConf: fromInstall('deploy/containers.conf'), timeoutMs },
    pino({ level: 'silent' }),
  );
}
