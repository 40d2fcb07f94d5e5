import { constants, createReadStream } from 'node:fs';
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { Header, Pax } from 'tar';
import { AppError } from '../errors.js';
import { checkRelativePath, type PathLimits } from './paths.js';

/**
 * Read-back of a workspace, always through a `ro,nosymfollow` view (WorkspaceStorage.openView):
 * the kernel refuses to follow any link on it, so a link a task planted, or swapped in for a
 * directory while we read, yields ELOOP instead of host content. On top of that every file is
 * opened O_NOFOLLOW|O_NONBLOCK (a FIFO cannot hang us) and checked with fstat on the open
 * descriptor, and only what fstat saw is sent.
 */

/** Entries that vanish, turn into links or change type during the walk are skipped, not fatal. */
const SKIP = new Set(['ENOENT', 'ELOOP', 'ENOTDIR', 'EACCES', 'ENXIO', 'EISDIR']);

const skippable = (err: unknown) => SKIP.has((err as NodeJS.ErrnoException).code ?? '');

const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

function header(fields: { path: string; type: 'File' | 'Directory' | 'SymbolicLink'; size?: number; mode: number; mtime: Date; linkpath?: string }): Buffer {
  const h = new Header({ uid: 65532, gid: 65532, uname: '', gname: '', size: 0, linkpath: '', ...fields });
  const block = Buffer.alloc(512);
  const needPax = h.encode(block);
  if (!needPax) return block;
  const pax = new Pax({ path: fields.path, linkpath: fields.linkpath, size: fields.size, mtime: fields.mtime } as ConstructorParameters<typeof Pax>[0]).encode();
  return Buffer.concat([pax, block]);
}

/** A file left out of an archive, and why. */
export interface OmittedFile {
  path: string;
  size: number;
  /** larger_than_quota: the file alone; total_over_quota: it would take the archive's file bytes past the quota. */
  reason: 'larger_than_quota' | 'total_over_quota';
}

type PlanEntry =
  | { kind: 'dir'; rel: string; mode: number; mtime: Date }
  | { kind: 'link'; rel: string; mtime: Date; target: string }
  | { kind: 'file'; rel: string };

/** What an archive will hold, decided by a walk (lstat only) before anything is sent. */
export interface ArchivePlan {
  entries: PlanEntry[];
  omitted: OmittedFile[];
  skipped: number;
  /** Most file bytes the archive sends: the workspace's quota. */
  limitBytes: number;
}

/** The name of the archive's last entry when files were left out: one line per file. */
export const OMITTED_LIST = '.sandboxshift-omitted.txt';

/**
 * Walks `viewDir` (never following a link) and decides what its archive holds: directories,
 * regular files and symbolic links; FIFOs, sockets and devices are skipped. The archive's file
 * bytes are bounded by `limitBytes` (the workspace's quota; a sparse file can claim far more):
 * a file larger than that, or one that would take the total past it, is left out and listed.
 */
export async function planView(viewDir: string, limitBytes: number): Promise<ArchivePlan> {
  const plan: ArchivePlan = { entries: [], omitted: [], skipped: 0, limitBytes };
  let total = 0;
  const stack: string[] = [''];
  while (stack.length) {
    const relDir = stack.pop()!;
    let names: string[];
    try {
      names = (await readdir(join(viewDir, relDir))).sort();
    } catch (err) {
      if (!skippable(err)) throw err;
      plan.skipped += 1;
      continue;
    }
    const subdirs: string[] = [];
    for (const name of names) {
      const rel = relDir ? `${relDir}/${name}` : name;
      let st;
      try {
        st = await lstat(join(viewDir, rel));
      } catch (err) {
        if (!skippable(err)) throw err;
        plan.skipped += 1;
        continue;
      }
      if (st.isDirectory()) {
        plan.entries.push({ kind: 'dir', rel, mode: st.mode & 0o777, mtime: st.mtime });
        subdirs.push(rel);
      } else if (st.isSymbolicLink()) {
        try {
          plan.entries.push({ kind: 'link', rel, mtime: st.mtime, target: await readlink(join(viewDir, rel)) });
        } catch (err) {
          if (!skippable(err) && (err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
          plan.skipped += 1;
        }
      } else if (st.isFile()) {
        if (st.size > limitBytes) plan.omitted.push({ path: rel, size: st.size, reason: 'larger_than_quota' });
        else if (total + st.size > limitBytes) plan.omitted.push({ path: rel, size: st.size, reason: 'total_over_quota' });
        else {
          total += st.size;
          plan.entries.push({ kind: 'file', rel });
        }
      } else {
        plan.skipped += 1; // FIFO, socket, device: nothing a reader can use
      }
    }
    stack.push(...subdirs.reverse());
  }
  return plan;
}

/**
 * Streams a tar.gz of what `plan` holds (links as link entries, never followed). A file that grew
 * since the plan so that it no longer fits the remaining budget is left out too. When anything
 * was left out, a last regular file `.sandboxshift-omitted.txt` lists each omitted file as
 * `<reason>\t<size>\t<path>` lines. Destroying the returned stream stops the walk. `onDone`
 * runs once the walk ended (complete, stopped or failed) and no file is open.
 */
export function packView(
  viewDir: string,
  plan: ArchivePlan,
  onDone: (r: { entries: number; skipped: number; omitted: number; error?: unknown }) => void,
): Readable {
  const gz = createGzip();
  const out = new PassThrough();
  gz.pipe(out);
  gz.on('error', (err) => out.destroy(err));
  // The client went away (the response destroyed `out`): stop walking, let pending writes return.
  let closed = false;
  const isClosed = () => closed;
  out.once('close', () => {
    closed = true;
    gz.destroy();
  });
  const write = async (buf: Buffer) => {
    if (closed) return;
    if (!gz.write(buf)) {
      await new Promise<void>((r) => {
        const done = () => {
          gz.off('drain', done);
          gz.off('close', done);
          r();
        };
        gz.on('drain', done);
        gz.on('close', done);
      });
    }
  };
  let entries = 0;
  let skipped = plan.skipped;
  const omitted = [...plan.omitted];
  let budget = plan.limitBytes;

  const sendFile = async (rel: string): Promise<void> => {
    let fh;
    try {
      fh = await open(join(viewDir, rel), OPEN_FLAGS);
    } catch (err) {
      if (!skippable(err)) throw err;
      skipped += 1;
      return;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) {
        skipped += 1;
        return;
      }
      if (st.size > budget) {
        omitted.push({ path: rel, size: st.size, reason: st.size > plan.limitBytes ? 'larger_than_quota' : 'total_over_quota' });
        return;
      }
      budget -= st.size;
      // The header promises fstat's size: send exactly that many bytes, zero-padded if the file
      // shrank meanwhile and cut if it grew (the archive stays well-formed either way).
      await write(header({ path: rel, type: 'File', size: st.size, mode: st.mode & 0o777, mtime: st.mtime }));
      let sent = 0;
      const chunk = Buffer.alloc(64 * 1024);
      while (sent < st.size && !isClosed()) {
        const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, st.size - sent), sent);
        if (bytesRead === 0) break;
        await write(Buffer.from(chunk.subarray(0, bytesRead)));
        sent += bytesRead;
      }
      const pad = (512 - (st.size % 512)) % 512;
      if (st.size > sent) await write(Buffer.alloc(st.size - sent));
      if (pad) await write(Buffer.alloc(pad));
      entries += 1;
    } finally {
      await fh.close();
    }
  };

  const walk = async (): Promise<void> => {
    for (const e of plan.entries) {
      if (isClosed()) return;
      if (e.kind === 'dir') {
        await write(header({ path: `${e.rel}/`, type: 'Directory', mode: e.mode, mtime: e.mtime }));
        entries += 1;
      } else if (e.kind === 'link') {
        await write(header({ path: e.rel, type: 'SymbolicLink', mode: 0o777, mtime: e.mtime, linkpath: e.target }));
        entries += 1;
      } else {
        await sendFile(e.rel);
      }
    }
    if (omitted.length > 0 && !isClosed()) {
      const list = Buffer.from(omitted.map((o) => `${o.reason}\t${o.size}\t${o.path}\n`).join(''));
      await write(header({ path: OMITTED_LIST, type: 'File', size: list.length, mode: 0o644, mtime: new Date() }));
      await write(Buffer.concat([list, Buffer.alloc((512 - (list.length % 512)) % 512)]));
    }
  };

  void walk()
    .then(async () => {
      await write(Buffer.alloc(1024)); // end-of-archive: two zero blocks
      if (!closed) gz.end();
      onDone({ entries, skipped, omitted: omitted.length });
    })
    .catch((error: unknown) => {
      onDone({ entries, skipped, omitted: omitted.length, error });
      out.destroy(error instanceof Error ? error : new Error(String(error)));
      gz.destroy();
    });
  return out;
}

/**
 * Opens one file of the view for reading. A link, or a path through one, is WORKSPACE_FILE_IS_LINK;
 * a directory, FIFO, socket or device is WORKSPACE_FILE_NOT_REGULAR; a missing path is
 * WORKSPACE_FILE_NOT_FOUND; a file larger than `maxBytes` (the workspace's quota: a sparse file) is
 * WORKSPACE_FILE_TOO_LARGE. The returned stream reads the descriptor that was checked.
 */
export async function openViewFile(viewDir: string, path: string, limits: PathLimits, maxBytes: number): Promise<{ stream: Readable; size: number }> {
  const segments = checkRelativePath(path, limits);
  const rel = segments.join('/');
  let fh;
  try {
    fh = await open(join(viewDir, rel), OPEN_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new AppError('WORKSPACE_FILE_IS_LINK', { path: rel });
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new AppError('WORKSPACE_FILE_NOT_FOUND', { path: rel });
    if (code === 'ENXIO' || code === 'EACCES') throw new AppError('WORKSPACE_FILE_NOT_REGULAR', { path: rel, kind: 'special' });
    throw err;
  }
  const st = await fh.stat().catch(async (err: unknown) => {
    await fh.close();
    throw err;
  });
  if (!st.isFile()) {
    await fh.close();
    throw new AppError('WORKSPACE_FILE_NOT_REGULAR', { path: rel, kind: st.isDirectory() ? 'directory' : 'special' });
  }
  if (st.size > maxBytes) {
    // A sparse file can claim far more than the workspace holds: never send more than its quota.
    await fh.close();
    throw new AppError('WORKSPACE_FILE_TOO_LARGE', { path: rel, size: st.size, limit: maxBytes });
  }
  if (st.size === 0) {
    await fh.close();
    return { stream: Readable.from([]), size: 0 };
  }
  // Bounded by the size fstat saw: a file that grows while it is sent is cut there.
  return { stream: createReadStream('', { fd: fh, start: 0, end: st.size - 1, autoClose: true }), size: st.size };
}
