import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar';
import type { SandboxShiftClient } from '../client/client.js';

/** The task's home directory inside the workspace (caches, shell history): never downloaded. */
const HOME_DIR = '.home';

export interface DownloadResult {
  written: string[];
  skipped: { path: string; why: string }[];
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function* walk(root: string, rel = ''): AsyncGenerator<string> {
  for (const e of await readdir(rel ? join(root, rel) : root, { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) yield* walk(root, r);
    else if (e.isFile()) yield r;
  }
}

/** True when writing `rel` under `dir` would pass through (or replace) a local symbolic link. */
async function throughLink(dir: string, rel: string): Promise<boolean> {
  const parts = rel.split('/');
  for (let i = 1; i <= parts.length; i++) {
    const st = await lstat(join(dir, ...parts.slice(0, i))).catch(() => null);
    if (!st) return false;
    if (st.isSymbolicLink()) return true;
  }
  return false;
}

/**
 * Brings back the workspace's regular files that the task wrote or changed: files that were not
 * uploaded or whose content differs from the upload (`uploaded`: path → sha256), or, when the
 * workspace was not uploaded by this run (`uploaded` null), files whose modification time is at
 * or after the task's start. Links and the task's home directory are not downloaded; files the
 * task deleted are not deleted locally; a local link on the way is never written through.
 */
export async function downloadChanged(
  client: SandboxShiftClient,
  workspaceId: string,
  dir: string,
  uploaded: Map<string, string | null> | null,
  startedAt: Date | null,
): Promise<DownloadResult> {
  const tmp = await mkdtemp(join(tmpdir(), 'sandboxshift-download-'));
  const result: DownloadResult = { written: [], skipped: [] };
  try {
    const since = startedAt ? Math.floor(startedAt.getTime() / 1000) * 1000 : 0;
    const archive = await client.downloadArchive(workspaceId);
    await pipeline(
      archive,
      extract({
        cwd: tmp,
        filter: (path, entry) => {
          const p = path.replace(/^\.\//, '');
          if (p === HOME_DIR || p.startsWith(`${HOME_DIR}/`)) return false;
          const e = entry as { type?: string; mtime?: Date };
          if (e.type === 'Directory') return true;
          if (e.type !== 'File' && e.type !== 'OldFile' && e.type !== 'ContiguousFile') return false;
          if (uploaded === null) return (e.mtime?.getTime() ?? 0) >= since;
          return true;
        },
      }),
    );
    await mkdir(dir, { recursive: true });
    for await (const rel of walk(tmp)) {
      if (uploaded !== null && uploaded.has(rel)) {
        const before = uploaded.get(rel);
        if (before && before === (await sha256(join(tmp, rel)))) continue;
      }
      if (await throughLink(dir, rel)) {
        result.skipped.push({ path: rel, why: 'a local symbolic link is on its path' });
        continue;
      }
      const parent = rel.split('/').slice(0, -1);
      if (parent.length) await mkdir(join(dir, ...parent), { recursive: true });
      await copyFile(join(tmp, rel), join(dir, rel));
      result.written.push(rel);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return result;
}
