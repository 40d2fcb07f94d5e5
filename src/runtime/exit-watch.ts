import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';

export interface ExitRecord {
  exitCode: number;
  finishedAt: Date;
}

/**
 * conmon writes a container's exit code into `<exit dir>/<container id>` the moment the container
 * has exited and its output is drained, before Podman's own record of the container changes. One
 * inotify watch of that directory tells every waiting task at once, without polling the engine.
 */
export class ExitWatcher {
  private readonly waiters = new Map<string, Set<() => void>>();
  private watcher: FSWatcher | null = null;

  constructor(readonly dir: string) {
    try {
      this.watcher = watch(dir, (_event, name) => {
        if (typeof name !== 'string') return;
        for (const wake of this.waiters.get(name) ?? []) wake();
      });
      this.watcher.on('error', () => undefined);
      this.watcher.unref();
    } catch {
      this.watcher = null;
    }
  }

  get watching(): boolean {
    return this.watcher !== null;
  }

  /** The exit conmon recorded for the container, or null while there is none. */
  read(containerId: string): ExitRecord | null {
    const path = join(this.dir, containerId);
    try {
      const text = readFileSync(path, 'utf8').trim();
      if (!/^-?\d+$/.test(text)) return null;
      return { exitCode: Number(text), finishedAt: statSync(path).mtime };
    } catch {
      return null;
    }
  }

  /** Calls `wake` whenever the container's exit file changes; returns the unsubscribe. */
  subscribe(containerId: string, wake: () => void): () => void {
    let set = this.waiters.get(containerId);
    if (!set) this.waiters.set(containerId, (set = new Set()));
    set.add(wake);
    return () => {
      set.delete(wake);
      if (set.size === 0) this.waiters.delete(containerId);
    };
  }

  close(): void {
    this.watcher?.close();
    this.watcher = null;
  }
}

/** conmon's `--exit-dir` from its command line (/proc/<pid>/cmdline), or null. */
export function conmonExitDir(conmonPid: number): string | null {
  try {
    const args = readFileSync(`/proc/${conmonPid}/cmdline`, 'utf8').split('\0');
    const at = args.indexOf('--exit-dir');
    const dir = at >= 0 ? args[at + 1] : undefined;
    return dir && dir.startsWith('/') ? dir : null;
  } catch {
    return null;
  }
}
