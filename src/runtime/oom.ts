import { closeSync, constants, openSync, readSync } from 'node:fs';

/**
 * Counts the kernel OOM killer's kills in a container's memory cgroup, whichever process it chose
 * (PID 1 or a child). On cgroup v1 Podman's `OOMKilled` often reads false, the container's cgroup
 * (and its `memory.oom_control` counter) is gone once it has exited, and parents do not add up
 * their children's kills; but every kill writes one kernel log record
 * `oom-kill:... oom_memcg=/.../libpod-<id>,...` naming the container, which outlives it.
 * The kernel rate-limits that record (10 per 5 s host-wide): under a burst the count is a lower bound.
 */
export interface OomProbe {
  oomKills(containerId: string): number;
}

export class KernelLogOomProbe implements OomProbe {
  constructor(private readonly path = '/dev/kmsg') {}

  oomKills(containerId: string): number {
    // The cgroup path ends with the id: `oom_memcg=/libpod_parent/libpod-<id>,task_memcg=...`.
    const needle = `oom_memcg=`;
    const name = `libpod-${containerId}`;
    let fd: number;
    try {
      fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      return 0;
    }
    const buf = Buffer.alloc(16 * 1024);
    let kills = 0;
    try {
      // /dev/kmsg returns one record per read and EAGAIN at the end of the ring buffer.
      for (let i = 0; i < 1_000_000; i++) {
        let n: number;
        try {
          n = readSync(fd, buf, 0, buf.length, null);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EPIPE') continue; // record overwritten while reading: skip it
          break; // EAGAIN: end of the buffer
        }
        if (n <= 0) break;
        const line = buf.toString('utf8', 0, n);
        const at = line.indexOf(needle);
        if (at < 0 || !line.includes('oom-kill:')) continue;
        const memcg = line.slice(at + needle.length).split(',')[0] ?? '';
        if (memcg.endsWith(name)) kills++;
      }
    } finally {
      closeSync(fd);
    }
    return kills;
  }
}
