import { readdirSync, readFileSync } from 'node:fs';
import Docker from 'dockerode';

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
