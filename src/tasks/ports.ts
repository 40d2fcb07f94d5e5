import type { EgressDecision } from '../egress/decisions.js';
import type { TaskRecord, TaskStatus } from './model.js';

export interface TaskPage {
  tasks: TaskRecord[];
  nextCursor: string | null;
}

/** What the task code needs of persistence (SqliteTaskStore implements it). */
export interface TaskStore {
  insertTask(t: TaskRecord): void;
  updateTask(t: TaskRecord): void;
  getTask(id: string): TaskRecord | null;
  listTasks(q: { status?: TaskStatus; tenant?: string; limit: number; cursor?: number }): TaskPage;
  tasksWithStatus(statuses: TaskStatus[]): TaskRecord[];
  egressDecisions(taskId: string): { decisions: EgressDecision[]; dropped: number };
}

/** What the task code needs of workspaces. */
export interface TaskWorkspaces {
  get(id: string): { id: string; tenant: string };
  /** A workspace named by id in a request: a regular workspace from now on (not ephemeral). */
  reuse(id: string): void;
  inspect(id: string): Promise<{ rootEntries: string[]; projectFile: string | null }>;
  createFromFiles(files: Record<string, string>, markers: string[], tenant: string): Promise<{ id: string }>;
  delete(id: string, busy: (id: string) => boolean): Promise<unknown>;
  /** Mounts the workspace for a run; pair with `release`. */
  hold(id: string): Promise<string>;
  /** Takes over the mount an earlier run left for a task that is adopted (no second mount). */
  adopt(id: string): void;
  release(id: string): Promise<void>;
  ensureHome(id: string): void;
  dir(id: string): string;
  /** Marks the workspace used now (the TTL counts from its last use). */
  touch(id: string): void;
  afterTask(id: string): Promise<{ full: boolean }>;
}
