import { execFile } from 'node:child_process';
import { mkdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { mountsUnder, unmount, unmountAllUnder } from '../workspace/storage.js';

const run = promisify(execFile);

/**
 * The host side of the pool's workspaces. `slots` is a bind mount of itself with shared
 * propagation; each pre-started container mounts its slot directory `rslave`, so a mount the
 * server makes on that directory appears at the container's /workspace (and only there: a slave
 * sees mounts below its own root only). `stage` stays private: a read-only view is made there
 * first, because a remount's flags do not propagate while a new bind mount carries its source's.
 */
export class SlotMounts {
  readonly slots: string;
  private readonly stage: string;

  constructor(root: string) {
    this.slots = join(root, 'slots');
    this.stage = join(root, 'stage');
  }

  /**
   * Unmounts what an earlier run left (except the slots in `keep`) and, for a pool that will
   * start members (`share`), makes `slots` a shared mount.
   */
  async prepare(keep: ReadonlySet<string>, share: boolean): Promise<number> {
    await mkdir(this.slots, { recursive: true, mode: 0o711 });
    await mkdir(this.stage, { recursive: true, mode: 0o700 });
    let unmounted = await unmountAllUnder(this.stage);
    const kept = new Set([...keep].map((s) => this.dir(s)));
    for (const p of mountsUnder(this.slots)) {
      if (p === this.slots || kept.has(p)) continue;
      await unmount(p);
      unmounted += 1;
    }
    if (!share) return unmounted;
    if (!mountsUnder(this.slots).includes(this.slots)) await run('mount', ['--bind', this.slots, this.slots]);
    await run('mount', ['--make-shared', this.slots]);
    return unmounted;
  }

  dir(slot: string): string {
    return join(this.slots, slot);
  }

  /** An empty root-owned directory for a new slot. */
  async create(slot: string): Promise<string> {
    await mkdir(this.dir(slot), { mode: 0o755 });
    return this.dir(slot);
  }

  /**
   * Mounts the (mounted, nosuid/nodev) workspace onto the slot. A bind mount takes its source's
   * flags; read-only goes through a private stage first.
   */
  async attach(slot: string, workspaceDir: string, readonly: boolean): Promise<void> {
    if (!readonly) {
      await run('mount', ['--bind', workspaceDir, this.dir(slot)]);
      return;
    }
    const staged = join(this.stage, slot);
    await mkdir(staged, { mode: 0o700 });
    try {
      await run('mount', ['--bind', workspaceDir, staged]);
      try {
        await run('mount', ['-o', 'remount,bind,ro,nosuid,nodev', staged]);
        await run('mount', ['--bind', staged, this.dir(slot)]);
      } finally {
        await unmount(staged);
      }
    } finally {
      await rmdir(staged).catch(() => undefined);
    }
  }

  /** Unmounts whatever is on the slot and removes its directory. */
  async clear(slot: string): Promise<void> {
    await unmountAllUnder(this.dir(slot));
    await rmdir(this.dir(slot)).catch(() => undefined);
  }

  /** Shutdown: unmounts every slot but those in `keep` (and `slots` itself when none is kept). */
  async close(keep: ReadonlySet<string>): Promise<void> {
    await unmountAllUnder(this.stage);
    const kept = new Set([...keep].map((s) => this.dir(s)));
    for (const p of mountsUnder(this.slots)) {
      if (p === this.slots || kept.has(p)) continue;
      await unmount(p);
      await rmdir(p).catch(() => undefined);
    }
    if (kept.size === 0) await unmount(this.slots);
  }
}
