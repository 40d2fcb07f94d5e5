import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { create as createTar } from 'tar';
import { EngineError } from '../engine.js';
import type { ArchiveLimits } from '../../workspace/intake/budget.js';
import { IntakeBudget } from '../../workspace/intake/budget.js';
import { extractTar } from '../../workspace/intake/tar.js';
import { TreeWriter } from '../../workspace/intake/writer.js';
import type { PathLimits } from '../../workspace/paths.js';
import { normaliseTree } from '../../workspace/workspaces.js';

/** Where a write-back is extracted before it replaces the workspace's files (same filesystem). */
export const STAGING_NAME = '.sandboxshift-writeback';

export interface Spooled {
  path: string;
  bytes: number;
  open(): Readable;
  remove(): Promise<void>;
}

/**
 * The workspace as a tar in a spool file (links kept as links, never followed), refused as soon
 * as it passes `maxBytes` (the error names engine.kubernetes.maxWorkspaceBytes).
 */
export async function spoolWorkspace(dir: string, spoolFile: string, maxBytes: number): Promise<Spooled> {
  await rm(join(dir, STAGING_NAME), { recursive: true, force: true });
  let bytes = 0;
  // The root's children, not the root: the pod's /workspace is not the task user's to chmod.
  const names = (await readdir(dir)).filter((n) => n !== STAGING_NAME);
  const remove = () => rm(spoolFile, { force: true });
  const out = createWriteStream(spoolFile, { mode: 0o600 });
  if (names.length === 0) {
    // An empty workspace: nothing to send (the header says 0 bytes).
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
    return { path: spoolFile, bytes: 0, open: () => createReadStream(spoolFile), remove };
  }
  const pack = createTar({ cwd: dir, portable: true, follow: false }, names);
  try {
    await pipeline(
      pack as unknown as Readable,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          bytes += chunk.length;
          if (bytes > maxBytes) {
            throw new EngineError(`the workspace is larger than engine.kubernetes.maxWorkspaceBytes (${maxBytes} bytes) as a tar, the most a task pod can be sent`);
          }
          yield chunk;
        }
      },
      out,
    );
  } catch (err) {
    await remove();
    throw err;
  }
  return { path: spoolFile, bytes: (await stat(spoolFile)).size, open: () => createReadStream(spoolFile), remove };
}

export interface WriteBackLimits {
  paths: PathLimits;
  archive: ArchiveLimits;
}

/**
 * Replaces the workspace's files with the tar a task pod sent back. The tar goes through the same
 * checks as an uploaded archive (paths, links, entry and byte budgets) into a staging directory on
 * the workspace's own filesystem; only a tar that passes them all replaces the files, so a
 * refused one leaves the workspace as the task found it. With `verified`, the files are replaced
 * only once it resolves (the archive's end line matched what arrived); its rejection aborts.
 */
export async function writeBack(input: Readable, dir: string, limits: WriteBackLimits, verified?: Promise<unknown>): Promise<{ files: number; bytes: number }> {
  const staging = join(dir, STAGING_NAME);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { mode: 0o755 });
  try {
    await extractTar(input, new TreeWriter(staging, limits.paths, new IntakeBudget(limits.archive)));
    const counted = await normaliseTree(staging);
    if (verified) await verified;
    for (const name of await readdir(dir)) if (name !== STAGING_NAME) await rm(join(dir, name), { recursive: true, force: true });
    for (const name of await readdir(staging)) await rename(join(staging, name), join(dir, name));
    await rm(staging, { recursive: true, force: true });
    return counted;
  } catch (err) {
    input.resume();
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}
