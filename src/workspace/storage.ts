import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, open, rename, rm, rmdir, statfs, truncate } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AppError } from '../errors.js';
import { hostRun as run } from './host-commands.js';
import { idmapMount } from './idmap.js';

/** Every workspace file belongs to the sandbox user (Chainguard `nonroot`). */
export const SANDBOX_UID = 65532;

/**
 * A workspace's filesystem. No journal and no reserved blocks: a workspace is scratch space, and
 * with -m 0 "full" means full for the task too. One inode per 8 KiB (131072 per GiB, twice
 * mkfs's default) because dependency trees hold many small files. Lazy init keeps creation at a
 * few ms.
 */
const MKFS_ARGS = ['-q', '-F', '-O', '^has_journal', '-m', '0', '-i', '8192', '-E', `root_owner=${SANDBOX_UID}:${SANDBOX_UID},lazy_itable_init=1`];

/**
 * One filesystem per workspace: a sparse ext4 image `<root>/<id>.img` of the quota's size,
 * loop-mounted at `<root>/<id>` (nosuid, nodev) only while something uses it (a task, an intake,
 * a read-back). This kernel has no filesystem quota formats (no project quotas): the image size is
 * the hard cap, a task writing past it gets ENOSPC, and hard links can never reach host files.
 *
 * Mounts are reference-counted per workspace and every mount/unmount of one workspace runs in
 * order (a chain of promises), so a read-back that starts while a task ends never sees the
 * directory unmounted under it. `mount -o loop` sets autoclear, so unmounting frees the loop device.
 */
export class WorkspaceStorage {
  private readonly refs = new Map<string, number>();
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly mounted = new Set<string>();
  private readonly idleWaiters = new Map<string, (() => void)[]>();
  private template: Promise<string> | null = null;

  constructor(
    readonly root: string,
    private readonly viewsRoot: string,
    private readonly quotaBytes: number,
    /** Where idmapped views for tasks with their own host UID are mounted. */
    readonly mappedRoot: string = join(root, '..', 'mapped'),
    /** The idmapped-mount helper (buildIdmapHelper), or null: no idmapped views. */
    private readonly idmapHelper: string | null = null,
  ) {}

  /** The idmapped view of a workspace for the task whose user is `hostUid`. */
  mappedDir(id: string, hostUid: number): string {
    return join(this.mappedRoot, `${id}.${hostUid}`);
  }

  /**
   * Mounts the idmapped view of a held workspace for a task running as host UID `hostUid`: the
   * task reads and writes it as its own, while every file stays owned by SANDBOX_UID on disk (and
   * so for the server, and for the next task). A view already mounted (an adopted task's) is kept.
   */
  async openMapped(id: string, hostUid: number): Promise<string> {
    if (!this.idmapHelper) throw new Error('no idmapped-mount helper: per-task host UIDs are off');
    const dir = this.mappedDir(id, hostUid);
    // Mounted already when it is another filesystem than its parent's (two stats, not the mount table).
    if (otherFilesystem(dir)) return dir;
    await mkdir(this.mappedRoot, { recursive: true, mode: 0o711 });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    try {
      await idmapMount(this.idmapHelper, this.dir(id), dir, SANDBOX_UID, hostUid);
    } catch (err) {
      await rmdir(dir).catch(() => undefined);
      throw err;
    }
    return dir;
  }

  /** Unmounts a task's idmapped view (before its workspace is released). */
  async closeMapped(id: string, hostUid: number): Promise<void> {
    const dir = this.mappedDir(id, hostUid);
    await unmount(dir);
    await rmdir(dir).catch(() => undefined);
  }

  dir(id: string): string {
    return join(this.root, id);
  }

  image(id: string): string {
    return join(this.root, `${id}.img`);
  }

  /**
   * Creates the sparse image and its filesystem (root directory owned by the sandbox user): a
   * sparse copy of the empty filesystem made once per quota (`templateImage`), which costs a
   * fraction of mkfs.ext4's run. Every workspace's filesystem therefore has the same UUID, which
   * nothing here reads (images are mounted by path).
   */
  async create(id: string): Promise<void> {
    const img = this.image(id);
    // Exclusive: an id is never given a second image.
    await (await open(img, 'wx', 0o600)).close();
    const template = await this.templateImage().catch(() => null);
    if (template) {
      await run('cp', ['--sparse=always', template, img]);
    } else {
      await truncate(img, this.quotaBytes);
      await run('mkfs.ext4', [...MKFS_ARGS, img]);
    }
    await mkdir(this.dir(id), { mode: 0o755 });
  }

  /** The empty filesystem new workspaces are copied from: made once, beside the workspaces. */
  private templateImage(): Promise<string> {
    this.template ??= (async () => {
      const dir = join(this.root, '..', 'workspace-template');
      const hash = createHash('sha256').update(MKFS_ARGS.join('\0')).digest('hex').slice(0, 12);
      const path = join(dir, `${this.quotaBytes}.${hash}.img`);
      if (existsSync(path)) return path;
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
      try {
        await (await open(tmp, 'wx', 0o600)).close();
        await truncate(tmp, this.quotaBytes);
        await run('mkfs.ext4', [...MKFS_ARGS, tmp]);
        await rename(tmp, path);
      } catch (err) {
        await rm(tmp, { force: true });
        this.template = null; // tried again by the next workspace
        throw err;
      }
      return path;
    })();
    return this.template;
  }

  /** Mounts the workspace (if it is not already) and holds it until `release`. */
  async acquire(id: string): Promise<string> {
    this.refs.set(id, (this.refs.get(id) ?? 0) + 1);
    try {
      await this.serial(id, async () => {
        if (!this.mounted.has(id)) {
          // Deleted meanwhile (a DELETE or the sweep ran first): the workspace is gone, not broken.
          if (!existsSync(this.image(id))) throw new AppError('WORKSPACE_NOT_FOUND', { id });
          await mountImage(this.image(id), this.dir(id));
          this.mounted.add(id);
        }
      });
    } catch (err) {
      await this.release(id);
      throw err;
    }
    return this.dir(id);
  }

  /**
   * Takes over a mount an earlier run of the server left in place (a task it left running and
   * this run adopts) as one hold: the image is not mounted a second time. False when the
   * workspace is not mounted.
   */
  adopt(id: string): boolean {
    if (!mountsUnder(this.dir(id)).includes(resolve(this.dir(id)))) return false;
    this.refs.set(id, (this.refs.get(id) ?? 0) + 1);
    this.mounted.add(id);
    return true;
  }

  /** Drops one hold; the last one unmounts. */
  async release(id: string): Promise<void> {
    const n = (this.refs.get(id) ?? 1) - 1;
    if (n > 0) this.refs.set(id, n);
    else {
      this.refs.delete(id);
      for (const wake of this.idleWaiters.get(id) ?? []) wake();
      this.idleWaiters.delete(id);
    }
    await this.serial(id, async () => {
      if (!this.refs.has(id) && this.mounted.has(id)) {
        this.mounted.delete(id);
        await unmount(this.dir(id));
      }
    });
  }

  /** True while a task, intake or read-back holds the workspace. */
  inUse(id: string): boolean {
    return this.refs.has(id);
  }

  /** Resolves true once nothing holds the workspace, or false after `ms`. */
  whenIdle(id: string, ms: number): Promise<boolean> {
    if (!this.refs.has(id)) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(!this.refs.has(id)), ms);
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.set(id, [...(this.idleWaiters.get(id) ?? []), wake]);
    });
  }

  /** Removes the image and the mount point (the workspace must not be held). */
  async destroy(id: string): Promise<void> {
    await this.serial(id, async () => {
      if (this.mounted.has(id)) {
        this.mounted.delete(id);
        await unmount(this.dir(id));
      }
      await rmdir(this.dir(id)).catch(ignoreMissing);
      await rm(this.image(id), { force: true });
    });
  }

  /** Bytes used and free on a mounted workspace (statfs: cheap, no walk). */
  async usage(id: string): Promise<{ usedBytes: number; freeBytes: number; freeInodes: number }> {
    const s = await statfs(this.dir(id));
    return { usedBytes: (s.blocks - s.bfree) * s.bsize, freeBytes: s.bavail * s.bsize, freeInodes: s.ffree };
  }

  /**
   * A read-only view of a held workspace in which no symlink is ever followed: a bind mount
   * remounted `ro,nosymfollow`. Any path through
   * a link a task planted, even one swapped in during the read, fails with ELOOP in the kernel.
   */
  async openView(id: string): Promise<{ dir: string; close: () => Promise<void> }> {
    const src = await this.acquire(id);
    const dir = join(this.viewsRoot, `${id}.${randomBytes(6).toString('hex')}`);
    try {
      await mkdir(this.viewsRoot, { recursive: true, mode: 0o700 });
      await mkdir(dir, { mode: 0o700 });
      await run('mount', ['--bind', src, dir]);
      try {
        await run('mount', ['-o', 'remount,bind,ro,nosymfollow,nosuid,nodev,noexec', dir]);
      } catch (err) {
        await unmount(dir);
        throw err;
      }
    } catch (err) {
      await rmdir(dir).catch(ignoreMissing);
      await this.release(id);
      throw err;
    }
    let closed = false;
    return {
      dir,
      close: async () => {
        if (closed) return;
        closed = true;
        await unmount(dir);
        await rmdir(dir).catch(ignoreMissing);
        await this.release(id);
      },
    };
  }

  /**
   * Unmounts everything still mounted (server shutdown), except the workspaces in `keep`: those
   * of tasks left running for the next start.
   */
  async close(keep: ReadonlySet<string> = new Set()): Promise<void> {
    await Promise.allSettled([...this.chains.values()]);
    await unmountAllUnder(this.viewsRoot);
    await this.unmountMapped(keep);
    const kept = new Set([...keep].map((id) => resolve(this.dir(id))));
    for (const p of mountsUnder(this.root)) if (!kept.has(p)) await unmount(p);
    this.mounted.clear();
    this.refs.clear();
  }

  /** Unmounts the idmapped views, except those of the workspaces in `keep`; returns how many. */
  async unmountMapped(keep: ReadonlySet<string> = new Set()): Promise<number> {
    let n = 0;
    for (const p of mountsUnder(this.mappedRoot)) {
      const name = p.slice(resolve(this.mappedRoot).length + 1);
      if (keep.has(name.slice(0, name.lastIndexOf('.')))) continue;
      await unmount(p);
      n += 1;
    }
    // The mount points themselves (empty directories; rmdir never removes anything mounted).
    for (const name of existsSync(this.mappedRoot) ? readdirSync(this.mappedRoot) : []) {
      if (!keep.has(name.slice(0, name.lastIndexOf('.')))) await rmdir(join(this.mappedRoot, name)).catch(() => undefined);
    }
    return n;
  }

  private serial<T>(id: string, step: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(id) ?? Promise.resolve();
    const next = prev.then(step, step);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(id, settled);
    void settled.then(() => {
      if (this.chains.get(id) === settled) this.chains.delete(id);
    });
    return next;
  }
}

async function mountImage(img: string, dir: string): Promise<void> {
  await run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', img, dir]);
  // Never hand out a directory that is not the workspace's own filesystem: a write there would
  // land on the host disk, outside any quota.
  if (!otherFilesystem(dir)) {
    throw new Error(`${dir} is not a mount point after mounting ${img}`);
  }
}

/** Unmounts; a mount still busy (e.g. an engine that did not remove a container) is detached lazily. */
export async function unmount(dir: string, runner: (file: string, args: string[]) => Promise<unknown> = run): Promise<void> {
  try {
    await runner('umount', [dir]);
  } catch (err) {
    const msg = String((err as { stderr?: string }).stderr ?? err);
    if (/not mounted|no mount point/i.test(msg)) return;
    await runner('umount', ['-l', dir]).catch(() => undefined);
  }
}

/** True when `dir` exists and holds another filesystem than its parent directory. */
function otherFilesystem(dir: string): boolean {
  try {
    return statSync(dir).dev !== statSync(resolve(dir, '..')).dev;
  } catch {
    return false;
  }
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  const base = resolve(dir);
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    const point = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point === base || point.startsWith(`${base}/`)) out.push(point);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Unmounts every mount at or below `dir` (start-up after a crash, shutdown, test teardown). */
export async function unmountAllUnder(dir: string): Promise<number> {
  const points = mountsUnder(dir);
  for (const p of points) await unmount(p);
  return points.length;
}

export function ignoreMissing(err: unknown): void {
  if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
}
