import { readdir } from 'node:fs/promises';
import type { Config } from '../../config/schema.js';
import { detectImage } from '../../detection/detect.js';
import type { WorkspaceRecord } from '../../store/sqlite.js';
import type { Workspaces } from '../workspaces.js';
import { extractArchive, type ArchiveKind } from './archive.js';
import { IntakeBudget } from './budget.js';
import type { UpstreamProxy } from '../../egress/upstream.js';
import { cloneGit, type GitSource } from './git.js';
import { copyHostPath } from './hostpath.js';
import { TreeWriter } from './writer.js';

/**
 * Extra admission check run on the populated tree's root files, before the record exists (e.g. a
 * task's image); `dir` is the populated tree (mounted), for reading its sandboxshift.yaml safely.
 */
export type RootCheck = (rootFiles: string[], dir: string) => Promise<void>;

/** Regular files in the root of `dir` (links are not followed), as marker detection sees them. */
async function rootFiles(dir: string): Promise<string[]> {
  return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
}

/**
 * Every intake kind in one place; each creates a workspace of the given tenant. Each goes through Workspaces.createWith, so a refused intake
 * leaves no directory and no record, and every kind gets the same normalisation afterwards.
 */
export class WorkspaceIntake {
  constructor(
    private readonly workspaces: Workspaces,
    private readonly config: Readonly<Config>,
    private readonly tmpDir: string,
    /** The CA bundle git intake trusts (null: the system's). */
    private readonly caFile: string | null = null,
    /** The operator's upstream proxy git intake goes through (null: direct). */
    private readonly upstreamProxy: UpstreamProxy | null = null,
  ) {}

  private writer(dir: string): TreeWriter {
    return new TreeWriter(dir, this.config.workspaces, new IntakeBudget(this.config.workspaces.archive));
  }

  private markers(): (rootFiles: string[]) => string[] {
    return (rootFiles) => detectImage(rootFiles, this.config.images).markers;
  }

  /** `check` runs inside createWith after extraction: if it throws, the extracted files are removed. */
  fromArchive(tenant: string, body: AsyncIterable<Buffer>, declared: ArchiveKind | null, declaredType: string, check?: RootCheck): Promise<WorkspaceRecord> {
    return this.workspaces.createWith(
      async (dir) => {
        await extractArchive(body, this.writer(dir), { declared, declaredType, tmpDir: this.tmpDir });
        if (check) await check(await rootFiles(dir), dir);
      },
      this.markers(),
      { tenant },
    );
  }

  /** Inline files (already checked by checkInlineFiles), written under the same rules as archives. */
  fromFiles(tenant: string, files: Record<string, string>): Promise<WorkspaceRecord> {
    return this.workspaces.createWith(
      async (dir) => {
        const writer = this.writer(dir);
        for (const [path, content] of Object.entries(files)) await writer.file(path, 0o644, (write) => write(Buffer.from(content)));
      },
      this.markers(),
      { tenant },
    );
  }

  /** Marks a workspace as created for one task (a multipart submission), once that task is accepted. */
  markEphemeral(id: string): void {
    this.workspaces.setEphemeral(id, true);
  }

  fromGit(tenant: string, source: GitSource): Promise<WorkspaceRecord> {
    return this.workspaces.createWith(
      (dir) => cloneGit(source, this.writer(dir), { git: this.config.workspaces.git, egress: this.config.egress, tmpDir: this.tmpDir, caFile: this.caFile, upstreamProxy: this.upstreamProxy }),
      this.markers(),
      { tenant },
    );
  }

  fromHostPath(tenant: string, hostPath: string): Promise<WorkspaceRecord> {
    return this.workspaces.createWith(
      (dir) => copyHostPath(hostPath, this.config.workspaces.hostRoots, this.writer(dir), this.config.workspaces),
      this.markers(),
      { tenant },
    );
  }
}
