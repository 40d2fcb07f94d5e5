import { randomBytes } from 'node:crypto';
import { chownSync, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { chown, chmod, lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../errors.js';
import type { Store, WorkspaceRecord } from '../store/sqlite.js';
import { checkRelativePath, type PathLimits } from './paths.js';

export const SANDBOX_UID = 65532;

export interface WorkspaceLimits extends PathLimits {
  maxFiles: number;
  maxBytes: number;
}

/** The `.home` directory tasks get as HOME (DESIGN.md section 9). */
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
 * Workspaces live under `<dataDir>/workspaces/<id>`, owned by the sandbox user. They are objects
 * of their own: a task references one by id or brings inline files that become a new one.
 */
export class Workspaces {
  constructor(
    private readonly root: string,
    private readonly store: Store,
    private readonly limits: WorkspaceLimits,
  ) {
    mkdirSync(root, { recursive: true, mode: 0o711 });
  }

  dir(id: string): string {
    return join(this.root, id);
  }

  get(id: string): WorkspaceRecord {
    const w = /^ws_[A-Za-z0-9_-]{1,64}$/.test(id) ? this.store.getWorkspace(id) : null;
    if (!w) throw new AppError('WORKSPACE_NOT_FOUND', { id });
    return w;
  }

  /** Root entry names (for marker detection). Lists without following links. */
  rootEntries(id: string): string[] {
    return readdirSync(this.dir(id), { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => e.name);
  }

  /** Creates a workspace from an inline file map; nothing is left behind if it fails. */
  createFromFiles(files: Record<string, string>, markers: string[]): WorkspaceRecord {
    const { bytes } = checkInlineFiles(files, this.limits);
    const id = newWorkspaceId();
    const dir = this.dir(id);
    try {
      mkdirSync(dir, { mode: 0o755 });
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
            chownSync(cur, SANDBOX_UID, SANDBOX_UID);
          }
        }
        const file = join(dir, ...segments);
        // 'wx': never overwrite or follow anything that is already there.
        writeFileSync(file, content, { flag: 'wx', mode: 0o644 });
        chownSync(file, SANDBOX_UID, SANDBOX_UID);
      }
      this.prepareHome(dir);
      chownSync(dir, SANDBOX_UID, SANDBOX_UID);
      const record: WorkspaceRecord = {
        id,
        createdAt: new Date().toISOString(),
        files: Object.keys(files).length,
        bytes,
        markers,
      };
      this.store.insertWorkspace(record);
      return record;
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Creates a workspace whose content `populate` writes into `dir`: an empty directory, owned by
   * root, on the filesystem the workspace will live on (so a populate step may rename within it).
   * `populate` must write only inside `dir` and never follow links it finds there. Afterwards every
   * entry is given to the sandbox user, setuid/setgid/sticky bits are stripped, files and bytes are
   * counted (links are not followed), and the markers are detected from the root entries.
   * If anything fails, nothing is left behind: no directory, no record.
   */
  async createWith(
    populate: (dir: string) => Promise<void>,
    detectMarkers: (rootFiles: string[]) => string[],
  ): Promise<WorkspaceRecord> {
    const id = newWorkspaceId();
    const dir = this.dir(id);
    await mkdir(dir, { mode: 0o755 });
    try {
      await populate(dir);
      const { files, bytes } = await normaliseTree(dir);
      try {
        lstatSync(join(dir, HOME_DIR));
      } catch {
        this.prepareHome(dir);
      }
      await chown(dir, SANDBOX_UID, SANDBOX_UID);
      const record: WorkspaceRecord = {
        id,
        createdAt: new Date().toISOString(),
        files,
        bytes,
        markers: detectMarkers(this.rootEntries(id)),
      };
      this.store.insertWorkspace(record);
      return record;
    } catch (err) {
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Recreates `.home` if a task removed it. mkdir never follows a link planted there. */
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

/**
 * Gives every entry under `dir` to the sandbox user and strips setuid, setgid and sticky bits;
 * counts regular files and their bytes. Uses lstat and lchown-free calls on non-links only, so a
 * link is never followed (links themselves keep root ownership, which does not matter for them).
 */
async function normaliseTree(dir: string): Promise<{ files: number; bytes: number }> {
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
