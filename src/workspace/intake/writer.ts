import { constants } from 'node:fs';
import { lchown, link, lstat, mkdir, open, symlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { AppError } from '../../errors.js';
import { checkRelativePath, type PathLimits } from '../paths.js';
import { SANDBOX_UID } from '../workspaces.js';
import type { IntakeBudget } from './budget.js';

type Kind = 'dir' | 'file' | 'link';

/** O_EXCL|O_NOFOLLOW: never overwrite anything, never open through a link at the last component. */
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** Source of a file's bytes: chunks as they arrive; the writer awaits each write (back-pressure). */
export type ChunkSource = (write: (chunk: Buffer) => Promise<void>) => Promise<void>;

/**
 * Writes an intake's entries into a staging directory that only it writes to. It keeps its own
 * map of what it created, so the rules are decided from the archive's own entries, and it checks
 * the disk with lstat on top (defence in depth):
 * - paths are relative, without `..`, NUL, or over-long/over-deep names (checkRelativePath);
 * - no entry is written through an earlier link, or over an earlier entry;
 * - a symlink's target must resolve inside the workspace without passing through another link,
 *   and no later link may appear on the path an earlier link points along;
 * - a hardlink must name a regular file the same intake wrote earlier.
 * Files are created with O_EXCL|O_NOFOLLOW; bytes are counted as written, not as declared.
 */
export class TreeWriter {
  private readonly kinds = new Map<string, Kind>();
  /** Every prefix of every symlink's resolved target (a later link there would redirect it). */
  private readonly linkPaths = new Set<string>();

  constructor(
    private readonly root: string,
    private readonly limits: PathLimits,
    readonly budget: IntakeBudget,
  ) {}

  /** Normalises an archive name: a leading `./` and a trailing `/` are dropped; returns null for the root itself. */
  private name(raw: string): string[] | null {
    let p = raw;
    while (p.startsWith('./')) p = p.slice(2);
    if (p.endsWith('/') && p.length > 1) p = p.replace(/\/+$/, '');
    if (p === '' || p === '.') return null;
    return checkRelativePath(p, this.limits);
  }

  /** Creates missing parent directories; refuses a parent that is a link or a file. */
  private async parents(segments: string[], entry: string): Promise<void> {
    for (let i = 1; i < segments.length; i++) {
      const rel = segments.slice(0, i).join('/');
      const kind = this.kinds.get(rel);
      if (kind === 'link') throw new AppError('WORKSPACE_LINK_ESCAPE', { entry, rule: 'path_through_link', link: rel });
      if (kind === 'file') throw new AppError('WORKSPACE_ENTRY_CONFLICT', { entry, rule: 'file_and_directory', file: rel });
      if (kind === 'dir') continue;
      try {
        await mkdir(join(this.root, rel), { mode: 0o755 });
      } catch (err) {
        // Only this writer writes here, so anything already present is a bug or a race: refuse.
        throw new AppError('WORKSPACE_ENTRY_CONFLICT', { entry, rule: 'unexpected_existing', path: rel, reason: (err as Error).message });
      }
      this.kinds.set(rel, 'dir');
    }
  }

  /** Common checks for a new entry; returns its normalised path or null (root directory entry). */
  private async begin(raw: string, kind: Kind): Promise<{ rel: string; segments: string[] } | null> {
    const segments = this.name(raw);
    if (segments === null) {
      if (kind === 'dir') return null;
      throw new AppError('WORKSPACE_PATH_INVALID', { entry: raw, path: raw, rule: 'empty_or_dot_segment' });
    }
    const rel = segments.join('/');
    this.budget.entry(rel);
    await this.parents(segments, rel);
    const existing = this.kinds.get(rel);
    if (existing === 'link') throw new AppError('WORKSPACE_ENTRY_CONFLICT', { entry: rel, rule: 'overwrite_link' });
    if (existing !== undefined && !(existing === 'dir' && kind === 'dir')) {
      throw new AppError('WORKSPACE_ENTRY_CONFLICT', { entry: rel, rule: 'duplicate_entry' });
    }
    if (kind === 'link' && this.linkPaths.has(rel)) {
      throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: rel, rule: 'symlink_redirects_earlier_link' });
    }
    return { rel, segments };
  }

  async dir(raw: string, mode = 0o755): Promise<void> {
    const e = await this.begin(raw, 'dir');
    if (e === null || this.kinds.get(e.rel) === 'dir') return;
    await mkdir(join(this.root, e.rel), { mode: (mode & 0o777) | 0o700 });
    this.kinds.set(e.rel, 'dir');
  }

  async file(raw: string, mode: number, source: ChunkSource): Promise<void> {
    const e = await this.begin(raw, 'file');
    const fh = await open(join(this.root, e!.rel), CREATE_FLAGS, (mode & 0o777) | 0o600);
    this.kinds.set(e!.rel, 'file');
    try {
      await source(async (chunk) => {
        this.budget.addBytes(e!.rel, chunk.length);
        await fh.write(chunk);
      });
    } finally {
      await fh.close();
    }
  }

  async symlink(raw: string, target: string): Promise<void> {
    const e = (await this.begin(raw, 'link'))!;
    const resolved = this.resolveLinkTarget(e.rel, e.segments, target);
    await symlink(target, join(this.root, e.rel));
    // createWith's normalisation skips links; lchown never follows one.
    await lchown(join(this.root, e.rel), SANDBOX_UID, SANDBOX_UID);
    this.kinds.set(e.rel, 'link');
    const parts = resolved === '' ? [] : resolved.split('/');
    for (let i = 1; i <= parts.length; i++) this.linkPaths.add(parts.slice(0, i).join('/'));
  }

  /** A symlink target, resolved lexically from the link's directory, must stay inside and not pass through a link. */
  private resolveLinkTarget(rel: string, segments: string[], target: string): string {
    if (target === '' || target.includes('\0')) throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: rel, target, rule: 'symlink_target_invalid' });
    if (target.startsWith('/')) throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: rel, target, rule: 'symlink_absolute' });
    const resolved = posix.normalize(posix.join(segments.slice(0, -1).join('/') || '.', target));
    if (resolved === '..' || resolved.startsWith('../')) {
      throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: rel, target, rule: 'symlink_outside' });
    }
    const clean = resolved === '.' ? '' : resolved.replace(/\/$/, '');
    const parts = clean === '' ? [] : clean.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (prefix === rel || this.kinds.get(prefix) === 'link') {
        throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: rel, target, rule: 'symlink_through_link', link: prefix });
      }
    }
    return clean;
  }

  async hardlink(raw: string, target: string): Promise<void> {
    const e = (await this.begin(raw, 'file'))!;
    if (target.startsWith('/')) throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: e.rel, target, rule: 'hardlink_absolute' });
    let t: string[] | null;
    try {
      t = this.name(target);
    } catch (err) {
      if (err instanceof AppError && err.code === 'WORKSPACE_PATH_ESCAPE') {
        throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: e.rel, target, rule: 'hardlink_outside' });
      }
      throw err;
    }
    const rel = t?.join('/') ?? '';
    for (let i = 1; t && i < t.length; i++) {
      if (this.kinds.get(t.slice(0, i).join('/')) === 'link') {
        throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: e.rel, target, rule: 'hardlink_through_link' });
      }
    }
    if (this.kinds.get(rel) !== 'file') {
      throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: e.rel, target, rule: 'hardlink_target_not_earlier_file' });
    }
    const st = await lstat(join(this.root, rel));
    if (!st.isFile()) throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: e.rel, target, rule: 'hardlink_target_not_earlier_file' });
    // link(2) does not follow a symlink at the source, and the target was written by this intake.
    await link(join(this.root, rel), join(this.root, e.rel));
    this.kinds.set(e.rel, 'file');
  }

  /** Refuses an entry type the workspace cannot hold (devices, FIFOs, sockets, unknown types). */
  special(raw: string, type: string): never {
    let entry = raw;
    try {
      entry = this.name(raw)?.join('/') ?? raw;
    } catch {
      // the type is the stronger reason; report the raw name
    }
    throw new AppError('WORKSPACE_SPECIAL_FILE', { entry, rule: type });
  }
}
