import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostRun } from './host-commands.js';

const run = promisify(execFile);

/**
 * A helper program of the server's from its C source, built once per source version with the
 * host's C compiler into the first of `binDirs` it can use (a directory only this user can
 * write), as `<name>-<hash of the source>`, and found there by later starts; returns its path.
 */
export async function buildCHelper(source: string, binDirs: readonly string[], name: string, cc = 'cc'): Promise<string> {
  const hash = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 16);
  let lastError: unknown = new Error(`no directory for the ${name} helper`);
  for (const dir of binDirs) {
    const bin = join(dir, `${name}-${hash}`);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      // Never run a binary from a directory someone else could have written to.
      const st = statSync(dir);
      if (st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) throw new Error(`${dir} is writable by others`);
      if (existsSync(bin)) return bin;
      const tmp = `${bin}.${process.pid}.tmp`;
      await run(cc, ['-O2', '-Wall', '-o', tmp, source]);
      renameSync(tmp, bin);
      return bin;
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/**
 * The idmapped-mount helper (deploy/idmap-mount/idmap_mount.c): runc 1.1 cannot give a bind mount
 * an idmapping, so the server makes the idmapped view of a workspace itself and the container
 * bind-mounts that.
 */
export function buildIdmapHelper(source: string, binDirs: readonly string[], cc = 'cc'): Promise<string> {
  return buildCHelper(source, binDirs, 'idmap-mount', cc);
}

/**
 * Mounts the filesystem at `src` again at `dst` (an empty directory), idmapped: files owned by
 * `id` on disk belong to `hostUid` there, and what `hostUid` creates is owned by `id` on disk.
 */
export async function idmapMount(helper: string, src: string, dst: string, id: number, hostUid: number): Promise<void> {
  // Through the host-command helper: no fork of the server's address space on the event loop.
  await hostRun(helper, [src, dst, String(id), String(hostUid)]);
}
