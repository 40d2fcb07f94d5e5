import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * The idmapped-mount helper (deploy/idmap-mount/idmap_mount.c): runc 1.1 cannot give a bind mount
 * an idmapping, so the server makes the idmapped view of a workspace itself and the container
 * bind-mounts that. Built once per source version into `binDir` (root-only) with the host's C
 * compiler; returns its path.
 */
export async function buildIdmapHelper(source: string, binDir: string, cc = 'cc'): Promise<string> {
  const hash = createHash('sha256').update(readFileSync(source)).digest('hex').slice(0, 16);
  const bin = join(binDir, `idmap-mount-${hash}`);
  if (existsSync(bin)) return bin;
  mkdirSync(binDir, { recursive: true, mode: 0o700 });
  chmodSync(binDir, 0o700);
  const tmp = `${bin}.${process.pid}.tmp`;
  await run(cc, ['-O2', '-Wall', '-o', tmp, source]);
  renameSync(tmp, bin);
  return bin;
}

/**
 * Mounts the filesystem at `src` again at `dst` (an empty directory), idmapped: files owned by
 * `id` on disk belong to `hostUid` there, and what `hostUid` creates is owned by `id` on disk.
 */
export async function idmapMount(helper: string, src: string, dst: string, id: number, hostUid: number): Promise<void> {
  await run(helper, [src, dst, String(id), String(hostUid)]);
}
