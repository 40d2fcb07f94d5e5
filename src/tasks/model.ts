import { DEFAULT_TENANT } from '../auth/principal.js';
import type { Isolation } from '../config/schema.js';
import type { TaskStatus } from '../streaming/frames.js';

export type { TaskStatus };

export const TERMINAL: ReadonlySet<TaskStatus> = new Set(['succeeded', 'failed', 'timed_out', 'cancelled', 'error']);

export type TaskReason = 'timeout' | 'oom' | 'disk_quota' | 'cancelled' | 'engine_error' | 'image_missing' | 'lost' | null;

export interface ImageChoice {
  name: string;
  markers: string[];
}

export interface TaskRecord {
  id: string;
  /** The tenant that submitted the task. */
  tenant: string;
  /** The API key it was submitted with; null on a server without keys. */
  keyId: string | null;
  status: TaskStatus;
  command: string;
  /** sandbox.setup from the workspace's sandboxshift.yaml: the task runs `setup && command`. */
  setup: string | null;
  /** Keys of sandboxshift.yaml whose values the task took (the request did not set them). */
  fromProjectFile: string[];
  image: ImageChoice;
  workspaceId: string;
  workspaceReadonly: boolean;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  exitCode: number | null;
  /** Processes the kernel OOM killer killed in the task's memory cgroup (0 until it ends). */
  oomKills: number;
  reason: TaskReason;
  /** Server-side cause when the sandbox never started or was lost; never the task's own output. */
  error: string | null;
  output: { stdoutBytes: number; stderrBytes: number; truncated: boolean };
  resources: { cpus: number; memoryMb: number; pids: number };
  timeoutSeconds: number;
  stdin: boolean;
  network: { allow: string[]; unrestricted: boolean };
  /** The runtime that runs (or ran) the task's container. */
  isolation: Isolation;
  /** Kept for the run; never served back (values may be secrets). */
  env: Record<string, string>;
  /** Names of the task's secretEnv (sorted); the values are never in the record (only kept encrypted, apart). */
  secretEnvKeys: string[];
  /** What the engine could not do as asked (absent on records of engines that had nothing to say). */
  notes?: string[];
}

/** At most this many engine notes are kept on a task, each at most NOTE_CHARS characters. */
export const MAX_NOTES = 16;
export const NOTE_CHARS = 500;

/** What the API serves for a task: the record without its env values. */
export function publicTask(t: TaskRecord) {
  const { env, ...rest } = t;
  // Records written before the count (tenants, the isolation) existed read 0 (the default tenant, runc).
  return { ...rest, tenant: rest.tenant ?? DEFAULT_TENANT, keyId: rest.keyId ?? null, oomKills: rest.oomKills ?? 0, isolation: rest.isolation ?? 'runc', envKeys: Object.keys(env).sort(), secretEnvKeys: rest.secretEnvKeys ?? [], notes: rest.notes ?? [] };
}

/**
 * Exit classification. `stoppedBy` says whether the server itself stopped the container (timeout
 * or cancel); a 137 the server did not send is the task's own failure, and any non-zero exit of a
 * task in which the OOM killer acted (PID 1 or a child) is `oom`.
 */
export function classifyExit(
  exit: { exitCode: number | null; oomKills: number },
  stoppedBy: 'timeout' | 'cancel' | null,
): { status: TaskStatus; reason: TaskReason } {
  if (stoppedBy === 'timeout') return { status: 'timed_out', reason: 'timeout' };
  if (stoppedBy === 'cancel') return { status: 'cancelled', reason: 'cancelled' };
  if (exit.exitCode === null) return { status: 'error', reason: 'engine_error' };
  if (exit.exitCode === 0) return { status: 'succeeded', reason: null };
  return { status: 'failed', reason: exit.oomKills > 0 ? 'oom' : null };
}
