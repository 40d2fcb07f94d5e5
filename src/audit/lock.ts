import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Sleeps the thread for `ms` (the lock is held for a few system calls, so waits are short). */
function sleep(ms: number): void {
  Atomics.wait(pause, 0, 0, ms);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A lock file still without a pid after this long was left by a process that died creating it. */
const EMPTY_LOCK_STALE_MS = 10_000;

function emptyAndOld(path: string): boolean {
  try {
    const st = statSync(path);
    return st.size === 0 && Date.now() - st.mtimeMs > EMPTY_LOCK_STALE_MS;
  } catch {
    return false;
  }
}

function holderOf(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * An exclusive lock between processes on one machine: a file created with O_EXCL holding the
 * owner's pid. A lock whose owner has died (a crash while holding it) is taken over. Synchronous,
 * so that an append and the read of the chain's last record it depends on happen as one step.
 */
export function withFileLock<T>(path: string, timeoutMs: number, fn: () => T): T {
  const deadline = Date.now() + timeoutMs;
  let fd: number | null = null;
  let wait = 1;
  while (fd === null) {
    try {
      fd = openSync(path, 'wx', 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = holderOf(path);
      // An owner that has died leaves its lock behind: checked twice, so that a lock another
      // process has just taken over (with its own pid) is not removed.
      const dead = pid !== null ? pid !== process.pid && !alive(pid) && holderOf(path) === pid : emptyAndOld(path);
      if (dead) {
        try {
          unlinkSync(path);
        } catch {
          // another process took it over first
        }
        continue;
      }
      if (Date.now() >= deadline) throw new Error(`the lock ${path} is held by process ${pid ?? '(unknown)'} for more than ${timeoutMs} ms`);
      sleep(wait);
      wait = Math.min(wait * 2, 20);
    }
  }
  try {
    writeSync(fd, `${process.pid}\n`);
    return fn();
  } finally {
    closeSync(fd);
    unlinkSync(path);
  }
}
