import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import ignore, { type Ignore } from 'ignore';
import { create as createTar } from 'tar';

/**
 * Folders never packed, at any depth: version control, dependencies and build output that a task
 * re-creates (or that a .gitignore usually lists anyway).
 */
export const DEFAULT_EXCLUDES = [
  '.git',
  '.hg',
  '.svn',
  'node_modules',
  'bower_components',
  '.venv',
  'venv',
  '__pycache__',
  '.pytest_cache',
  '.mypy_cache',
  '.tox',
  '.gradle',
  '.next',
  'target',
  'dist',
  'build',
] as const;

export interface PackedDirectory {
  /** A gzipped tar in a temporary directory; call `cleanup()` when done with it. */
  file: string;
  bytes: number;
  /** Regular files packed, by relative path, with their sha256 when `hash` was asked. */
  files: Map<string, string | null>;
  /** Symbolic links packed (as links; never followed). */
  links: string[];
  /** Entries left out because they cannot go into a workspace: links leaving DIR, special files. */
  skipped: { path: string; why: string }[];
  cleanup(): Promise<void>;
}

interface Matcher {
  base: string;
  ig: Ignore;
}

const defaults = ignore().add(DEFAULT_EXCLUDES.map((d) => `${d}/`));

function ignored(rel: string, isDir: boolean, matchers: Matcher[]): boolean {
  const probe = isDir ? `${rel}/` : rel;
  if (defaults.ignores(probe)) return true;
  for (const m of matchers) {
    const sub = m.base === '' ? probe : probe.slice(m.base.length + 1);
    if (m.ig.ignores(sub)) return true;
  }
  return false;
}

/**
 * A symlink is kept (as a link) only when the server's intake would accept it: a relative target
 * that, resolved from the link's directory, stays inside DIR and passes through no other link.
 */
async function linkInside(root: string, rel: string, target: string): Promise<string | null> {
  if (target === '' || target.startsWith('/')) return 'link target is absolute';
  const resolved = posix.normalize(posix.join(posix.dirname(rel), target));
  if (resolved === '..' || resolved.startsWith('../')) return 'link points outside the directory';
  const parts = resolved === '.' ? [] : resolved.replace(/\/$/, '').split('/');
  for (let i = 1; i <= parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    if (prefix === rel) return 'link points at itself';
    const st = await lstat(join(root, prefix)).catch(() => null);
    if (st?.isSymbolicLink()) return 'link points through another link';
  }
  return null;
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Packs a directory as tar.gz for POST /v1/workspaces: every .gitignore in the tree is honoured
 * (each for the paths below it), DEFAULT_EXCLUDES are left out, links are never followed.
 */
export async function packDirectory(dir: string, opts: { hash?: boolean } = {}): Promise<PackedDirectory> {
  const st = await stat(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  const entries: string[] = [];
  const links: string[] = [];
  const files = new Map<string, string | null>();
  const skipped: { path: string; why: string }[] = [];

  async function walk(rel: string, matchers: Matcher[]): Promise<void> {
    const abs = rel === '' ? dir : join(dir, rel);
    const gitignore = await readFile(join(abs, '.gitignore'), 'utf8').catch(() => null);
    const here = gitignore === null ? matchers : [...matchers, { base: rel, ig: ignore().add(gitignore) }];
    const names = (await readdir(abs)).sort();
    for (const name of names) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const s = await lstat(join(dir, childRel));
      if (ignored(childRel, s.isDirectory(), here)) continue;
      if (s.isDirectory()) {
        entries.push(childRel);
        await walk(childRel, here);
      } else if (s.isFile()) {
        entries.push(childRel);
        files.set(childRel, opts.hash ? await sha256(join(dir, childRel)) : null);
      } else if (s.isSymbolicLink()) {
        const why = await linkInside(dir, childRel, await readlink(join(dir, childRel)));
        if (why) skipped.push({ path: childRel, why });
        else links.push(childRel);
      } else {
        skipped.push({ path: childRel, why: 'not a regular file, directory or link' });
      }
    }
  }
  await walk('', []);

  const tmp = await mkdtemp(join(tmpdir(), 'sandboxshift-pack-'));
  const file = join(tmp, 'workspace.tar.gz');
  // Links go last so that no later entry is written through one.
  await createTar({ gzip: true, cwd: dir, file, portable: true, noDirRecurse: true, follow: false }, [...entries, ...links]);
  const bytes = (await stat(file)).size;
  return { file, bytes, files, links, skipped, cleanup: () => rm(tmp, { recursive: true, force: true }) };
}
