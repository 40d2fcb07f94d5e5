import { randomBytes } from 'node:crypto';
import { DEFAULT_TENANT } from '../auth/principal.js';
import { EventEmitter } from 'node:events';
import { chownSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { chown, chmod, lstat, readdir, rm, rmdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { AppError } from '../errors.js';
import type { Store, WorkspaceRecord } from '../store/sqlite.js';
import { checkRelativePath, type PathLimits } from './paths.js';
import { readProjectFile } from './projectfile.js';
import { ignoreMissing, mountsUnder, SANDBOX_UID, unmount, unmountAllUnder, WorkspaceStorage } from './storage.js';

export { SANDBOX_UID };

export interface WorkspaceLimits extends PathLimits {
  maxFiles: number;
  maxBytes: number;
}

/** Storage and lifecycle settings (config `workspaces`). */
export interface WorkspaceStorageLimits extends WorkspaceLimits {
  quotaMb: number;
  projectFileBytes: number;
  ttlSeconds: number;
  ephemeralTtlSeconds: number;
}

/**
 * A workspace counts as full when less than this is left after a failed task (or no inode):
 * ext4 with no reserved blocks leaves ~0 free once a write got ENOSPC.
 */
const FULL_BELOW_BYTES = 256 * 1024;

/** The `.home` directory tasks get as HOME. */
export const HOME_DIR = '.home';

export const newWorkspaceId = () => `ws_${randomBytes(12).toString('base64url')}`;

/** Validates an inline file map without touching the disk; returns its root entries. */
export function checkInlineFiles(files: Record<string, string>, limits: WorkspaceLimits): { rootEntries: string[]; bytes: number } {
  const entries = Object.entries(files);
  if (entries.length > limits.maxFiles) {
    throw new AppError('WORKSPACE_TOO_MANY_FILES', { files: entries.length, limit: limits.maxFiles });
  }
  let bytes = 0;
  const filePaths = new Set<string>();
  const dirPaths = new Set<string>();
  const root = new Set<string>();
  for (const [path, content] of entries) {
    const segments = checkRelativePath(path, limits);
    bytes += Buffer.byteLength(content);
    if (bytes > limits.maxBytes) throw new AppError('WORKSPACE_TOO_LARGE', { bytes, limit: limits.maxBytes });
    root.add(segments[0]!);
    for (let i = 1; i < segments.length; i++) dirPaths.add(segments.slice(0, i).join('/'));
    filePaths.add(segments.join('/'));
  }
  for (const p of filePaths) {
    if (dirPaths.has(p)) throw new AppError('WORKSPACE_PATH_INVALID', { path: p, rule: 'file_and_directory' });
  }
  return { rootEntries: [...root], bytes };
}

/**
 * Workspaces are objects of their own: a task references one by id or brings inline files that
 * become a new one. Each lives on its own filesystem (WorkspaceStorage: a loop-mounted ext4 image
 * of the quota's size, mounted only while in use); its record is in the store.
 *
 * Mount discipline: `dir(id)` is only a real workspace while it is held (`hold`/`release`, or
 * inside `createWith`). rootEntries, ensureHome and readProjectFile need it held.
 */
/** What Workspaces emits (for the audit log): a workspace recorded, and one removed (by a request, or expired). */
export interface WorkspaceEvents {
  created: [workspace: Readonly<WorkspaceRecord>];
  deleted: [workspace: Readonly<WorkspaceRecord>, cause: 'request' | 'expired'];
}

export class Workspaces extends EventEmitter<WorkspaceEvents> {
  readonly storage: WorkspaceStorage;
  private readonly quotaBytes: number;
  /** Quota bytes of workspaces being created, by tenant (counted against the tenant's limit). */
  private readonly reserved = new Map<string, number>();

  constructor(
    private readonly root: string,
    private readonly store: Store,
    private readonly limits: WorkspaceStorageLimits,
    private readonly now: () => Date = () => new Date(),
    /** The disk a tenant's workspaces may take together (tenants workspaceBytes), in bytes. */
    private readonly tenantBytes: (tenant: string) => number = () => Number.MAX_SAFE_INTEGER,
    /** The idmapped-mount helper, for tasks with a host UID of their own (null: none). */
    idmapHelper: string | null = null,
  ) {
    super();
    mkdirSync(root, { recursive: true, mode: 0o711 });
    this.quotaBytes = limits.quotaMb * 1024 * 1024;
    this.storage = new WorkspaceStorage(root, join(root, '..', 'views'), this.quotaBytes, join(root, '..', 'mapped'), idmapHelper);
  }

  /**
   * The directory a task running as host UID `hostUid` gets as /workspace: an idmapped view of
   * the held workspace in which that UID owns what SANDBOX_UID owns on disk. Pair with `unmap`
   * before the release.
   */
  async mapFor(id: string, hostUid: number): Promise<string> {
    return this.storage.openMapped(id, hostUid);
  }

  async unmap(id: string, hostUid: number): Promise<void> {
    await this.storage.closeMapped(id, hostUid);
  }

  /**
   * Start-up: unmounts whatever a crashed server left mounted under the data directory and
   * removes images and mount points that have no record (a creation cut short).
   */
  async start(keep: ReadonlySet<string> = new Set()): Promise<{ unmounted: number; removed: number; kept: number }> {
    let unmounted = await unmountAllUnder(join(this.root, '..', 'views'));
    unmounted += await this.storage.unmountMapped(keep);
    // Mounts of workspaces whose tasks are adopted stay; every other mount goes.
    const kept = new Set([...keep].map((id) => resolve(this.dir(id))));
    for (const p of mountsUnder(this.root)) {
      if (kept.has(p)) continue;
      await unmount(p);
      unmounted += 1;
    }
    await rm(join(this.root, '..', 'views'), { recursive: true, force: true });
    let removed = 0;
    for (const name of readdirSync(this.root)) {
      const id = name.endsWith('.img') ? name.slice(0, -4) : name;
      if (this.store.getWorkspace(id)) continue;
      const p = join(this.root, name);
      // Plain files and empty mount points only: never a recursive delete of something mounted.
      if (name.endsWith('.img')) await rm(p, { force: true });
      else await rmdir(p).catch(() => undefined);
      removed += 1;
    }
    return { unmounted, removed, kept: kept.size };
  }

  /** Unmounts everything but the workspaces in `keep` (server shutdown). */
  async close(keep?: ReadonlySet<string>): Promise<void> {
    await this.storage.close(keep);
  }

  /** Takes over the mount an earlier run left for an adopted task (see WorkspaceStorage.adopt). */
  adopt(id: string): void {
    if (!this.storage.adopt(id)) throw new Error(`workspace ${id} is not mounted`);
  }

  dir(id: string): string {
    return this.storage.dir(id);
  }

  get(id: string): WorkspaceRecord {
    const w = /^ws_[A-Za-z0-9_-]{1,64}$/.test(id) ? this.store.getWorkspace(id) : null;
    if (!w) throw new AppError('WORKSPACE_NOT_FOUND', { id });
    return w;
  }

  /** Every workspace record (for the list route), or only those of `tenant`. */
  list(tenant?: string): WorkspaceRecord[] {
    const all = this.store.listWorkspaces();
    return tenant === undefined ? all : all.filter((w) => w.tenant === tenant);
  }

  /** Mounts the workspace for a task or a read (reference-counted); pair with `release`. */
  async hold(id: string): Promise<string> {
    return this.storage.acquire(id);
  }

  async release(id: string): Promise<void> {
    await this.storage.release(id);
  }

  /** Root entry names (for marker detection); the workspace must be held. Lists without following links. */
  rootEntries(id: string): string[] {
    return readdirSync(this.dir(id), { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => e.name);
  }

  /**
   * The root entries and the project file of a stored workspace, read in one hold. The workspace
   * may be changing under a running task: only the root directory (the mount root, which a task
   * cannot replace) is listed, and the file is opened with O_NOFOLLOW, so no link is followed.
   */
  async inspect(id: string): Promise<{ rootEntries: string[]; projectFile: string | null }> {
    await this.hold(id);
    try {
      return { rootEntries: this.rootEntries(id), projectFile: await this.readProjectFile(id) };
    } finally {
      await this.release(id);
    }
  }

  /** Reads `sandboxshift.yaml` from a held workspace's root (see readProjectFile). */
  async readProjectFile(id: string): Promise<string | null> {
    return readProjectFile(this.dir(id), this.limits.projectFileBytes);
  }

  /**
   * Creates a task's own workspace from an inline file map (ephemeral: see WorkspaceRecord);
   * nothing is left behind if it fails.
   */
  async createFromFiles(files: Record<string, string>, markers: string[], tenant: string): Promise<WorkspaceRecord> {
    checkInlineFiles(files, this.limits);
    return this.createWith(async (dir) => writeInlineFiles(dir, files), () => markers, { ephemeral: true, tenant });
  }

  /**
   * An empty workspace made ahead of its task (a pool slot holds one): created and mounted as a
   * task's own empty workspace is, held once, and not recorded until `claimSpare` (an unrecorded
   * image is removed at the next start, so a crash leaves none behind).
   */
  async createSpare(): Promise<WorkspaceRecord> {
    return this.createWith(async () => undefined, () => [], { ephemeral: true, spare: true, tenant: DEFAULT_TENANT });
  }

  /**
   * Records a spare as `tenant`'s task's own (ephemeral) workspace; it stays held by its maker.
   * Refused (TENANT_STORAGE_LIMIT) like a new workspace when the tenant has no room for one.
   */
  claimSpare(spare: WorkspaceRecord, markers: string[], tenant: string): WorkspaceRecord {
    this.reserve(tenant)(); // the same check as a created workspace; the record below counts from now on
    const now = this.now().toISOString();
    const record = { ...spare, tenant, markers, createdAt: now, lastUsedAt: now };
    this.store.insertWorkspace(record);
    this.emit('created', record);
    return record;
  }

  /** Removes a spare nobody claimed (its hold is dropped, then image and mount point go). */
  async discardSpare(id: string): Promise<void> {
    await this.release(id);
    if (!this.store.getWorkspace(id)) await this.storage.destroy(id);
  }

  /** Sets whether a workspace is ephemeral (created for one task) or regular. */
  setEphemeral(id: string, ephemeral: boolean): void {
    const w = this.store.getWorkspace(id);
    if (w && w.ephemeral !== ephemeral) this.store.updateWorkspace({ ...w, ephemeral });
  }

  /** A task names the workspace by id: from then on it is a regular workspace with the normal TTL. */
  reuse(id: string): void {
    this.setEphemeral(id, false);
  }

  /** When the TTL sweep may remove it: its last use plus the TTL of its kind. */
  expiresAt(w: WorkspaceRecord): Date {
    return new Date(Date.parse(w.lastUsedAt) + (w.ephemeral ? this.limits.ephemeralTtlSeconds : this.limits.ttlSeconds) * 1000);
  }

  /**
   * Creates a workspace whose content `populate` writes into `dir`: an empty directory, owned by
   * root, on the filesystem the workspace will live on (so a populate step may rename within it).
   * `populate` must write only inside `dir` and never follow links it finds there. Afterwards every
   * entry is given to the sandbox user, setuid/setgid/sticky bits are stripped, files and bytes are
   * counted (links are not followed), and the markers are detected from the root entries.
   * If anything fails, nothing is left behind: no image, no mount, no directory, no record.
   * Writing past the quota fails with WORKSPACE_QUOTA_EXCEEDED. The workspace is `opts.tenant`'s.
   */
  async createWith(
    populate: (dir: string) => Promise<void>,
    detectMarkers: (rootFiles: string[]) => string[],
    opts: { ephemeral?: boolean; spare?: boolean; tenant: string },
  ): Promise<WorkspaceRecord> {
    const id = newWorkspaceId();
    // A spare belongs to no tenant until it is claimed (claimSpare makes the tenant's check).
    const unreserve = opts.spare ? () => undefined : this.reserve(opts.tenant);
    let held = false;
    try {
      await this.storage.create(id);
      const dir = await this.hold(id);
      held = true;
      // mkfs leaves lost+found; the contract is an empty directory, owned by root while populated.
      await rm(join(dir, 'lost+found'), { recursive: true, force: true });
      await chown(dir, 0, 0);
      await chmod(dir, 0o755);
      try {
        await populate(dir);
      } catch (err) {
        if (isNoSpace(err)) throw new AppError('WORKSPACE_QUOTA_EXCEEDED', { quotaBytes: this.quotaBytes, quotaMb: this.limits.quotaMb });
        throw err;
      }
      const { files, bytes } = await normaliseTree(dir);
      try {
        lstatSync(join(dir, HOME_DIR));
      } catch {
        this.prepareHome(dir);
      }
      await chown(dir, SANDBOX_UID, SANDBOX_UID);
      const now = this.now().toISOString();
      const record: WorkspaceRecord = {
        id,
        tenant: opts.tenant,
        createdAt: now,
        files,
        bytes,
        markers: detectMarkers(this.rootEntries(id)),
        lastUsedAt: now,
        usedBytes: (await this.storage.usage(id)).usedBytes,
        quotaBytes: this.quotaBytes,
        ephemeral: opts.ephemeral ?? false,
      };
      if (opts.spare) held = false; // a spare stays mounted and unrecorded until it is claimed
      else {
        this.store.insertWorkspace(record);
        this.emit('created', record);
      }
      return record;
    } catch (err) {
      if (held) await this.release(id);
      held = false;
      await this.storage.destroy(id);
      throw err;
    } finally {
      unreserve();
      if (held) await this.release(id);
    }
  }

  /**
   * Counts a new workspace's quota against its tenant's limit before anything is created: the
   * quotas (not the bytes in use) of the tenant's workspaces, those being created included, since
   * each may fill its quota later. Past the limit: TENANT_STORAGE_LIMIT. Returns the undo.
   */
  private reserve(tenant: string): () => void {
    let allocated = this.reserved.get(tenant) ?? 0;
    for (const w of this.store.listWorkspaces()) if (w.tenant === tenant) allocated += w.quotaBytes || this.quotaBytes;
    const limit = this.tenantBytes(tenant);
    if (allocated + this.quotaBytes > limit) {
      throw new AppError('TENANT_STORAGE_LIMIT', { tenant, limitBytes: limit, allocatedBytes: allocated, requestedBytes: this.quotaBytes });
    }
    this.reserved.set(tenant, (this.reserved.get(tenant) ?? 0) + this.quotaBytes);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const left = (this.reserved.get(tenant) ?? 0) - this.quotaBytes;
      if (left > 0) this.reserved.set(tenant, left);
      else this.reserved.delete(tenant);
    };
  }

  /**
   * After a task on a held workspace: refreshes the counts and the usage, marks it used, and
   * says whether the filesystem is full (the task filled its quota).
   */
  async afterTask(id: string): Promise<{ full: boolean }> {
    const w = this.store.getWorkspace(id);
    const u = await this.storage.usage(id);
    if (w) {
      const { files, bytes } = await countTree(this.dir(id));
      this.store.updateWorkspace({ ...w, files, bytes, usedBytes: u.usedBytes, lastUsedAt: this.now().toISOString() });
    }
    return { full: u.freeBytes < FULL_BELOW_BYTES || u.freeInodes === 0 };
  }

  /** Marks a workspace used now (read-back); the TTL counts from the last use. */
  touch(id: string): void {
    const w = this.store.getWorkspace(id);
    if (w) this.store.updateWorkspace({ ...w, lastUsedAt: this.now().toISOString() });
  }

  /**
   * Deletes a workspace: its record first (synchronously, so no task can be admitted on it
   * afterwards), then its mount, image and mount point. `busy` says whether a task is queued or
   * running on it; then, or while anything holds it, the delete is refused with WORKSPACE_BUSY.
   */
  async delete(id: string, busy: (id: string) => boolean, waitMs = 0, cause: 'request' | 'expired' = 'request'): Promise<void> {
    const w = this.get(id);
    if (busy(w.id)) throw new AppError('WORKSPACE_BUSY', { id: w.id, reason: 'a task is queued or running on it' });
    // A task that just finished may still be releasing it (its container being removed), or a
    // read-back may be ending: wait a little for that before refusing.
    await this.storage.whenIdle(w.id, waitMs);
    // Checked again after the wait, and nothing awaits between these checks and the delete.
    this.get(w.id);
    if (busy(w.id)) throw new AppError('WORKSPACE_BUSY', { id: w.id, reason: 'a task is queued or running on it' });
    if (this.storage.inUse(w.id)) throw new AppError('WORKSPACE_BUSY', { id: w.id, reason: 'it is being read or written by the server' });
    this.store.deleteWorkspace(w.id);
    this.emit('deleted', w, cause);
    await this.storage.destroy(w.id);
  }

  /** Removes expired workspaces (expiresAt: ttlSeconds, or ephemeralTtlSeconds) that nothing uses; returns their ids. */
  async sweep(busy: (id: string) => boolean): Promise<string[]> {
    const now = this.now().getTime();
    const removed: string[] = [];
    for (const w of this.store.listWorkspaces()) {
      if (this.expiresAt(w).getTime() > now || busy(w.id) || this.storage.inUse(w.id)) continue;
      await this.delete(w.id, busy, 0, 'expired').then(
        () => removed.push(w.id),
        () => undefined, // became busy meanwhile: next sweep
      );
    }
    return removed;
  }

  /** Recreates `.home` if a task removed it; the workspace must be held. mkdir never follows a link planted there. */
  ensureHome(id: string): void {
    const home = join(this.dir(id), HOME_DIR);
    try {
      lstatSync(home);
    } catch {
      this.prepareHome(this.dir(id));
    }
  }

  private prepareHome(dir: string): void {
    const home = join(dir, HOME_DIR);
    mkdirSync(home, { mode: 0o700 });
    chownSync(home, SANDBOX_UID, SANDBOX_UID);
  }
}

function isNoSpace(err: unknown): boolean {
  for (let e = err as { code?: string; cause?: unknown } | undefined, i = 0; e && i < 5; e = e.cause as typeof e, i++) {
    if (e.code === 'ENOSPC' || e.code === 'EDQUOT') return true;
  }
  return false;
}

/** Writes an inline file map (already checked) into an empty directory. */
function writeInlineFiles(dir: string, files: Record<string, string>): void {
  for (const [path, content] of Object.entries(files)) {
    const segments = path.split('/');
    let cur = dir;
    for (const seg of segments.slice(0, -1)) {
      cur = join(cur, seg);
      try {
        if (!lstatSync(cur).isDirectory()) throw new AppError('WORKSPACE_PATH_INVALID', { path, rule: 'file_and_directory' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        mkdirSync(cur, { mode: 0o755 });
      }
    }
    // 'wx': never overwrite or follow anything that is already there.
    writeFileSync(join(dir, ...segments), content, { flag: 'wx', mode: 0o644 });
  }
}

/**
 * Counts regular files and their bytes without following links (after a task, when nothing
 * writes to the workspace: at most one task runs on it and read-backs only read).
 */
async function countTree(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    const entries = await readdir(d, { withFileTypes: true }).catch((err: unknown) => {
      ignoreMissing(err);
      return [];
    });
    for (const e of entries) {
      if (e.isDirectory()) stack.push(join(d, e.name));
      else if (e.isFile()) {
        files += 1;
        bytes += (await lstat(join(d, e.name)).catch(() => ({ size: 0 }))).size;
      }
    }
  }
  return { files, bytes };
}

/**
 * Gives every entry under `dir` to the sandbox user and strips setuid, setgid and sticky bits;
 * counts regular files and their bytes. Uses lstat and lchown-free calls on non-links only, so a
 * link is never followed (links themselves keep root ownership, which does not matter for them).
 */
export async function normaliseTree(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isSymbolicLink()) continue;
      const st = await lstat(p);
      if (st.isDirectory()) {
        await walk(p);
      } else if (st.isFile()) {
        files += 1;
        bytes += st.size;
      } else {
        throw new AppError('WORKSPACE_PATH_INVALID', { path: p.slice(dir.length + 1), rule: 'special_file' });
      }
      await chmod(p, st.mode & 0o777);
      await chown(p, SANDBOX_UID, SANDBOX_UID);
    }
  };
  await walk(dir);
  return { files, bytes };
}
