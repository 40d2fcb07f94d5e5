import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/**
 * Per-UID kernel counters that every task shares (all run as host UID 65532), raised at start-up
 * far enough that no task, within its own bounds, can use up what another task needs.
 *
 * - inotify instances: each is an open file, so one task holds at most pids × nofile of them, plus
 *   nofile more in flight in Unix-socket messages (the kernel caps in-flight files per user at
 *   RLIMIT_NOFILE).
 * - inotify watches and epoll watches: unbounded per instance, but each one is kernel memory
 *   charged to the task's memory cgroup (inotify marks at least 64 bytes, epoll items 128), so one
 *   task holds at most memory / size of them.
 *
 * A limit is only ever raised, never lowered; the server logs what it changed.
 */
export interface KernelLimitBounds {
  concurrency: number;
  maxPids: number;
  nofile: number;
  maxMemoryMb: number;
}

export interface KernelLimit {
  /** Path under /proc/sys. */
  key: string;
  required: number;
}

/** The largest value these sysctls take (they are C ints). */
export const SYSCTL_INT_MAX = 2 ** 31 - 1;
const INOTIFY_MARK_MIN_BYTES = 64;
const EPOLL_ITEM_BYTES = 128;

export function requiredKernelLimits(b: KernelLimitBounds): KernelLimit[] {
  const memoryBytes = b.maxMemoryMb * 1024 * 1024;
  // Every running task at its maximum, and one more for the task that asks.
  const all = (perTask: number) => b.concurrency * perTask + 1;
  return [
    { key: 'fs/inotify/max_user_instances', required: all((b.maxPids + 1) * b.nofile) },
    { key: 'fs/inotify/max_user_watches', required: all(Math.ceil(memoryBytes / INOTIFY_MARK_MIN_BYTES)) },
    { key: 'fs/epoll/max_user_watches', required: all(Math.ceil(memoryBytes / EPOLL_ITEM_BYTES)) },
  ];
}

export interface KernelLimitChange {
  key: string;
  from: number;
  to: number;
}

/**
 * Raises each limit below its requirement (capped at SYSCTL_INT_MAX). Returns what changed; a
 * limit that cannot be read or written is logged as a warning, never fatal (the server may run
 * without the privilege, with shared counters as the kernel has them).
 */
export function raiseKernelLimits(limits: KernelLimit[], log: Logger, root = '/proc/sys'): KernelLimitChange[] {
  const changed: KernelLimitChange[] = [];
  for (const { key, required } of limits) {
    const path = join(root, key);
    const want = Math.min(required, SYSCTL_INT_MAX);
    if (want < required) log.warn({ key, required, max: want }, 'kernel limit needed by the task bounds exceeds what the kernel takes');
    try {
      const from = Number(readFileSync(path, 'utf8').trim());
      if (Number.isFinite(from) && from >= want) continue;
      writeFileSync(path, `${want}\n`);
      changed.push({ key, from, to: want });
    } catch (err) {
      log.warn({ key, want, err: (err as Error).message }, 'cannot raise a per-user kernel limit: tasks share it as it is');
    }
  }
  if (changed.length > 0) log.info({ changed }, 'per-user kernel limits raised so that no task can exhaust them for the others');
  return changed;
}

/**
 * RLIMIT_SIGPENDING for each task that has a user namespace of its own. Queued signals count per
 * (user namespace, UID) against the receiver's limit, and again, all namespaces together, against
 * the limit their creator (root, which runs runc) had: `hostLimit`. So each task gets at most
 * half of it shared out over the tasks that can run at once, leaving root the other half.
 */
export function taskSigpending(hostLimit: number, concurrency: number): number {
  return Math.max(1, Math.floor(hostLimit / (2 * concurrency)));
}

/** The soft RLIMIT_SIGPENDING of this process (what the owned engine inherits), null when unknown. */
export function ownSigpendingLimit(limitsFile = '/proc/self/limits'): number | null {
  try {
    const m = /^Max pending signals\s+(\d+|unlimited)\s/m.exec(readFileSync(limitsFile, 'utf8'));
    if (!m) return null;
    return m[1] === 'unlimited' ? SYSCTL_INT_MAX : Number(m[1]);
  } catch {
    return null;
  }
}
