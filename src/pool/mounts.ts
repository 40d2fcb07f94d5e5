import { mkdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { hostRun as run } from '../workspace/host-commands.js';
import { mountsUnder, unmount, unmountAllUnder } from '../workspace/storage.js';

/** A slot's egress and stdin directories are the slot's own name with these suffixes (slot ids never hold a dot). */
const EGRESS_SUFFIX = '.egress';
const STDIN_SUFFIX = '.stdin';

/**
 * The host side of the pool's workspaces and egress sockets. `slots` is a bind mount of itself with shared
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
    const kept = this.keptDirs(keep);
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

  /**
   * The slot's egress directory (mounted `rslave` at the container's egress socket directory):
   * an empty read-only tmpfs of its own (shared, so that what is mounted on it propagates), so a
   * task without an allowlist sees no host directory there; a task with one has its proxy socket
   * directory mounted onto it, read-only.
   */
  egressDir(slot: string): string {
    return join(this.slots, `${slot}${EGRESS_SUFFIX}`);
  }

  /**
   * The slot's stdin directory (mounted `rslave` where a cold sandbox has its stdin pipe's
   * directory): an empty read-only tmpfs like the egress directory; a task whose stdin goes
   * through a pipe has its pipe's directory mounted onto it, read-only.
   */
  stdinDir(slot: string): string {
    return join(this.slots, `${slot}${STDIN_SUFFIX}`);
  }

  /** Empty root-owned directories for a new slot (its workspace, egress and stdin directories). */
  async create(slot: string): Promise<{ dir: string; egressDir: string; stdinDir: string }> {
    await mkdir(this.dir(slot), { mode: 0o755 });
    for (const [dir, name] of [
      [this.egressDir(slot), 'sandboxshift-egress'],
      [this.stdinDir(slot), 'sandboxshift-stdin'],
    ] as const) {
      await mkdir(dir, { mode: 0o755 });
      await run('mount', ['-t', 'tmpfs', '-o', 'ro,size=4k,mode=0555,nosuid,nodev,noexec', name, dir]);
      await run('mount', ['--make-shared', dir]);
    }
    return { dir: this.dir(slot), egressDir: this.egressDir(slot), stdinDir: this.stdinDir(slot) };
  }

  /** Mounts a task's egress socket directory onto the slot's, read-only (nosuid, nodev, noexec). */
  async attachEgress(slot: string, socketDir: string): Promise<void> {
    await this.bindReadonly(`${slot}.egress`, socketDir, this.egressDir(slot), 'remount,bind,ro,nosuid,nodev,noexec');
  }

  /** Mounts a task's stdin pipe directory onto the slot's, read-only (nosuid, nodev, noexec). */
  async attachStdin(slot: string, pipeDir: string): Promise<void> {
    await this.bindReadonly(`${slot}.stdin`, pipeDir, this.stdinDir(slot), 'remount,bind,ro,nosuid,nodev,noexec');
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
    await this.bindReadonly(`${slot}.ws`, workspaceDir, this.dir(slot), 'remount,bind,ro,nosuid,nodev');
  }

  /** `source` onto `target` with the remount's flags, made on a private stage (`<stage>/<name>`) first. */
  private async bindReadonly(name: string, source: string, target: string, flags: string): Promise<void> {
    const staged = join(this.stage, name);
    await mkdir(staged, { mode: 0o700 });
    try {
      await run('mount', ['--bind', source, staged]);
      try {
        await run('mount', ['-o', flags, staged]);
        await run('mount', ['--bind', staged, target]);
      } finally {
        await unmount(staged);
      }
    } finally {
      await rmdir(staged).catch(() => undefined);
    }
  }

  /** Unmounts whatever is on the slot's directories and removes them. */
  async clear(slot: string): Promise<void> {
    for (const dir of this.dirsOf(slot)) {
      await unmountAllUnder(dir);
      await rmdir(dir).catch(() => undefined);
    }
  }

  private dirsOf(slot: string): string[] {
    return [this.dir(slot), this.egressDir(slot), this.stdinDir(slot)];
  }

  /** The directories of the slots in `keep` (all three of each). */
  private keptDirs(keep: ReadonlySet<string>): Set<string> {
    return new Set([...keep].flatMap((s) => this.dirsOf(s)));
  }

  /** Shutdown: unmounts every slot but those in `keep` (and `slots` itself when none is kept). */
  async close(keep: ReadonlySet<string>): Promise<void> {
    await unmountAllUnder(this.stage);
    const kept = this.keptDirs(keep);
    for (const p of mountsUnder(this.slots)) {
      if (p === this.slots || kept.has(p)) continue;
      await unmount(p);
      await rmdir(p).catch(() => undefined);
    }
    if (kept.size === 0) await unmount(this.slots);
  }
}
