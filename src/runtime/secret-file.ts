import { chownSync, closeSync, lstatSync, mkdirSync, openSync, readdirSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Where a task finds its secrets file (a read-only bind mount inside the /run tmpfs). */
export const SECRETS_FILE = '/run/sandboxshift/secrets.env';

/**
 * The command wrapper of a task with secrets: the shell exports the file's variables, then runs
 * the task's command (its first argument, `$0`) as `/bin/sh -c <command>`. A file that cannot be
 * read ends the shell before the command runs.
 */
export const SECRETS_WRAPPER = `. ${SECRETS_FILE} && exec /bin/sh -c "$0"`;

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** `NAME='value'` lines a POSIX shell sources: single quotes keep every byte but `'`, written as `'\''`. */
export function shellExports(env: Readonly<Record<string, string>>): string {
  return Object.entries(env)
    .map(([k, v]) => `export ${k}='${v.replaceAll("'", `'\\''`)}'\n`)
    .join('');
}

/**
 * Per-task secrets files on a host tmpfs, so that the values are neither in the container's
 * configuration (`podman inspect` shows its Env) nor on disk: `<dir>/<taskId>.env`, readable only
 * by the container's user (the task's own process reads it once, through the bind mount), in a
 * root-only directory. Removed when the container is.
 */
export class SecretFiles {
  constructor(private readonly dir: string) {}

  write(taskId: string, env: Readonly<Record<string, string>>, user: string): string {
    this.prepareDir();
    const path = this.path(taskId);
    rmSync(path, { force: true });
    const fd = openSync(path, 'wx', 0o400);
    try {
      const [uid, gid] = user.split(':').map(Number);
      chownSync(path, uid!, gid ?? uid!);
      writeSync(fd, shellExports(env));
    } catch (err) {
      closeSync(fd);
      rmSync(path, { force: true });
      throw err;
    }
    closeSync(fd);
    return path;
  }

  remove(taskId: string): void {
    rmSync(this.path(taskId), { force: true });
  }

  /** Start-up: removes the files of every task not in `keep`. */
  sweep(keep: ReadonlySet<string>): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) if (!keep.has(name.replace(/\.env$/, ''))) rmSync(join(this.dir, name), { force: true });
  }

  private path(taskId: string): string {
    if (!/^tsk_[A-Za-z0-9_-]{1,64}$/.test(taskId)) throw new Error(`not a task id: ${taskId}`);
    return join(this.dir, `${taskId}.env`);
  }

  /**
   * The directory and its parent must be real directories (no links) of this server's user that
   * nobody else may enter, on memory-backed storage.
   */
  private prepareDir(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const d of [dirname(this.dir), this.dir]) {
      const st = lstatSync(d);
      if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o077) !== 0) {
        throw new Error(`the secrets directory ${d} must be a directory of this server's user with mode 0700`);
      }
    }
    const type = statfsSync(this.dir).type;
    if (type !== TMPFS_MAGIC && type !== RAMFS_MAGIC) throw new Error(`the secrets directory ${this.dir} is not on a tmpfs`);
  }
}
