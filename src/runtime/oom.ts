import { closeSync, constants, openSync, readSync } from 'node:fs';

/**
 * Tells whether the kernel's OOM killer acted in a container's memory cgroup. On cgroup v1 Podman's
 * `OOMKilled` often reads false and the container's cgroup (and its counter) is gone once it has
 * exited, but the kernel log line `oom-kill:... oom_memcg=/.../libpod-<id>` names the container.
 */
export interface OomProbe {
  wasOomKilled(containerId: string): boolean;
}

export class KernelLogOomProbe implements OomProbe {
  constructor(private readonly path = '/dev/kmsg') {}

  wasOomKilled(containerId: string): boolean {
    const needle = `libpod-${containerId}`;
    let fd: number;
    try {
      fd = openSync(this.path, constants.O_RDONLY | constants.O_NONBLOCK);
    } catch {
      return false;
    }
    const buf = Buffer.alloc(16 * 1024);
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
        if (line.includes('oom_memcg=') && line.includes(needle)) return true;
      }
    } finally {
      closeSync(fd);
    }
    return false;
  }
}
