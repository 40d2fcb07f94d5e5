import { constants, openSync, readSync } from 'node:fs';

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

/**
 * Reads the kernel log incrementally: one descriptor kept open, each call reads only the records
 * written since the last one and adds their kills to per-container counts (the first call reads
 * the whole ring buffer). Counts of at most MAX_TRACKED containers are kept, oldest dropped.
 */
export class KernelLogOomProbe implements OomProbe {
  private fd: number | null = null;
  private failed = false;
  private readonly kills = new Map<string, number>();
  private readonly buf = Buffer.alloc(16 * 1024);

  constructor(private readonly path = '/dev/kmsg') {}

  oomKills(containerId: string): number {
    this.readNew();
    return this.kills.get(containerId) ?? 0;
  }

  private readNew(): void {
    if (this.fd === null) {
      if (this.failed) return;
      try {
        this.fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
      } catch {
        this.failed = true;
        return;
      }
    }
    // /dev/kmsg returns one record per read and EAGAIN at the end of the ring buffer.
    for (let i = 0; i < 1_000_000; i++) {
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EPIPE') continue; // records overwritten before they were read: skip them
        break; // EAGAIN: end of the buffer
      }
      if (n <= 0) break;
      const line = this.buf.toString('latin1', 0, n);
      // The cgroup path ends with the id: `oom_memcg=/libpod_parent/libpod-<id>,task_memcg=...`.
      const at = line.indexOf('oom_memcg=');
      if (at < 0 || !line.includes('oom-kill:')) continue;
      const memcg = line.slice(at + 'oom_memcg='.length).split(',')[0] ?? '';
      const m = /libpod-([0-9a-f]{64})$/.exec(memcg);
      if (!m) continue;
      const id = m[1]!;
      const count = (this.kills.get(id) ?? 0) + 1;
      this.kills.delete(id);
      this.kills.set(id, count);
      if (this.kills.size > MAX_TRACKED) this.kills.delete(this.kills.keys().next().value!);
    }
  }
}

const MAX_TRACKED = 10_000;
