import { constants, type Stats } from 'node:fs';
import { lstat, open, readdir, readlink, realpath } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../../errors.js';
import { checkRelativePath, type PathLimits } from '../paths.js';
import type { TreeWriter } from './writer.js';

const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;
const CHUNK = 256 * 1024;

function typeName(st: Stats): string {
  if (st.isCharacterDevice()) return 'character_device';
  if (st.isBlockDevice()) return 'block_device';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  return 'unknown';
}

/**
 * Resolves `<root name>/<path>` under a configured host root. The path is refused if it names
 * `..` or passes through a symlink anywhere below the root (each component is lstat'ed), and it
 * must be a directory. Returns the absolute directory.
 */
export async function resolveHostPath(hostPath: string, roots: Readonly<Record<string, string>>, limits: PathLimits): Promise<string> {
  const segments = checkRelativePath(hostPath, limits);
  const rootDir = roots[segments[0]!];
  if (rootDir === undefined) throw new AppError('HOST_PATH_NOT_FOUND', { hostPath, rule: 'unknown_root', roots: Object.keys(roots) });
  let cur: string;
  try {
    cur = await realpath(rootDir); // the operator's root itself may be reached through links
  } catch {
    throw new AppError('HOST_PATH_NOT_FOUND', { hostPath, rule: 'root_missing' });
  }
  for (const seg of segments.slice(1)) {
    cur = join(cur, seg);
    let st: Stats;
    try {
      st = await lstat(cur);
    } catch {
      throw new AppError('HOST_PATH_NOT_FOUND', { hostPath });
    }
    if (st.isSymbolicLink()) throw new AppError('WORKSPACE_PATH_ESCAPE', { hostPath, rule: 'symlink_in_host_path', component: seg });
    if (!st.isDirectory()) throw new AppError('HOST_PATH_NOT_FOUND', { hostPath, rule: 'not_a_directory' });
  }
  return cur;
}

/**
 * Copies a host directory into the staging directory without following links: links are
 * recreated as links (under the same rules as archive links), files are opened with O_NOFOLLOW
 * and must still be the file that was listed, and devices, FIFOs and sockets are refused.
 */
export async function copyHostPath(hostPath: string, roots: Readonly<Record<string, string>>, writer: TreeWriter, limits: PathLimits): Promise<void> {
  await copyTree(await resolveHostPath(hostPath, roots, limits), writer);
}

/** Copies the tree under `top` through the writer (also used for git checkouts). */
export async function copyTree(top: string, writer: TreeWriter): Promise<void> {
  const walk = async (abs: string, rel: string): Promise<void> => {
    const names = (await readdir(abs)).sort();
    for (const name of names) {
      const src = join(abs, name);
      const to = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(src);
      if (st.isDirectory()) {
        await writer.dir(to, st.mode);
        await walk(src, to);
      } else if (st.isSymbolicLink()) {
        await writer.symlink(to, await readlink(src));
      } else if (st.isFile()) {
        await writer.file(to, st.mode, async (write) => {
          const fh = await open(src, READ_FLAGS);
          try {
            const now = await fh.stat();
            if (!now.isFile() || now.ino !== st.ino || now.dev !== st.dev) {
              throw new AppError('WORKSPACE_ENTRY_CONFLICT', { entry: to, rule: 'changed_while_copying' });
            }
            const buf = Buffer.alloc(CHUNK);
            for (;;) {
              const { bytesRead } = await fh.read(buf, 0, CHUNK, null);
              if (bytesRead === 0) break;
              await write(Buffer.from(buf.subarray(0, bytesRead)));
            }
          } finally {
            await fh.close();
          }
        });
      } else {
        writer.special(to, typeName(st));
      }
    }
  };
  await walk(top, '');
}
