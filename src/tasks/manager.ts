import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { DEFAULT_TENANT } from '../auth/principal.js';
import type { Config } from '../config/schema.js';
import type { EgressProxy } from '../egress/proxy.js';
import { AppError } from '../errors.js';
import type { ContainerEngine, OwnContainer } from '../runtime/engine.js';
import type { HostUidPool } from '../runtime/host-uids.js';
import { decodeCursor } from '../store/cursor.js';
import { TaskLog } from '../streaming/tasklog.js';
import { PROJECT_FILE } from '../workspace/projectfile.js';
import { checkInlineFiles } from '../workspace/workspaces.js';
import { planTask, requireImage, requireRelay, type TaskPlan, type WorkspaceFacts } from './admission.js';
import { TaskLifecycle, type Clock } from './lifecycle.js';
import { TERMINAL, type TaskRecord, type TaskStatus } from './model.js';
import type { TaskStore, TaskWorkspaces } from './ports.js';
import { planRecovery, type RecoveryPlan } from './recovery.js';
import { TaskRun } from './run.js';
import { TaskRunner } from './runner.js';
import { TaskScheduler } from './scheduler.js';
import type { CreateTaskBody } from './schemas.js';

export type { Clock, RecoveryPlan };

export const newTaskId = () => `tsk_${randomBytes(12).toString('base64url')}`;

/**
 * The task facade the HTTP layer talks to: admission (planTask and the engine's checks), then
 * TaskLifecycle records the task, then TaskScheduler queues it and TaskRunner runs it. Status
 * transitions happen in TaskLifecycle only.
 */
export class TaskManager {
  /** Tasks queued or running, by id (a task leaves once it reached a terminal state). */
  private readonly active = new Map<string, TaskRun>();
  private readonly scheduler: TaskScheduler<TaskRecord>;
  private readonly runner: TaskRunner;
  private closing = false;
  readonly lifecycle: TaskLifecycle;

  constructor(
    private readonly config: Readonly<Config>,
    private readonly engine: ContainerEngine,
    private readonly store: TaskStore,
    private readonly workspaces: TaskWorkspaces,
    private readonly logsDir: string,
    log: Logger,
    private readonly clock: Clock = { now: () => new Date() },
    /** Egress proxy for tasks with an allowlist; null refuses to run such tasks. */
    egress: EgressProxy | null = null,
    /** Host UIDs of tasks' own user namespaces; null runs every task as host UID 65532. */
    uids: HostUidPool | null = null,
  ) {
    this.lifecycle = new TaskLifecycle(store, log, clock);
    this.runner = new TaskRunner(config, engine, workspaces, this.lifecycle, log, clock, egress, (id) => this.active.delete(id), uids);
    this.scheduler = new TaskScheduler(config, (task) => this.runner.run(this.active.get(task.id)!), log);
  }

  /**
   * Start-up, before anything is mounted or cleaned: which of our containers belong to tasks
   * recorded `running` (adopted), and which belong to no such task (orphans, to be removed).
   */
  plan(containers: OwnContainer[]): RecoveryPlan {
    return planRecovery(this.store.tasksWithStatus(['running']), containers);
  }

  /**
   * At start-up: tasks recorded `running` whose container is still there are adopted (their log
   * continues, their deadline stands); the others are lost. Queued tasks run.
   */
  recover(plan: RecoveryPlan): void {
    for (const t of this.store.tasksWithStatus(['running'])) {
      const a = this.newRun(t, TaskLog.open(this.logDir(t.id)));
      const container = plan.adopt.get(t.id);
      if (!container) {
        t.error = 'the server stopped while the task was running and its container is gone';
        this.runner.finish(a, 'error', 'lost', null);
        continue;
      }
      this.active.set(t.id, a);
      this.scheduler.adoptRunning(t, this.runner.adopt(a, container));
    }
    for (const t of this.store.tasksWithStatus(['queued'])) {
      this.active.set(t.id, this.newRun(t, TaskLog.open(this.logDir(t.id))));
      this.scheduler.requeue(t);
    }
    this.scheduler.pump();
  }

  private newRun(task: TaskRecord, log: TaskLog): TaskRun {
    return new TaskRun(task, log, this.config.output);
  }

  logDir(id: string): string {
    return join(this.logsDir, id);
  }

  get(id: string): TaskRecord {
    const t = /^tsk_[A-Za-z0-9_-]{1,64}$/.test(id) ? (this.active.get(id)?.task ?? this.store.getTask(id)) : null;
    if (!t) throw new AppError('TASK_NOT_FOUND', { id });
    return t;
  }

  list(q: { status?: TaskStatus; limit: number; cursor?: string }) {
    let cursor: number | undefined;
    if (q.cursor !== undefined) {
      const c = decodeCursor(q.cursor);
      if (c === null) throw new AppError('VALIDATION_FAILED', { issues: [{ path: 'cursor', message: 'not a cursor this server issued' }] });
      cursor = c;
    }
    if (q.limit > this.config.requests.listLimit) {
      throw new AppError('LIMIT_ABOVE_MAXIMUM', { field: 'limit', value: q.limit, maximum: this.config.requests.listLimit });
    }
    return this.store.listTasks({ ...(q.status ? { status: q.status } : {}), limit: q.limit, ...(cursor !== undefined ? { cursor } : {}) });
  }

  /** The log of a task (live, or opened from disk for finished ones). */
  taskLog(id: string): TaskLog {
    const task = this.get(id);
    return this.active.get(task.id)?.log ?? TaskLog.open(this.logDir(task.id));
  }

  async submit(body: CreateTaskBody): Promise<TaskRecord> {
    this.refuseWhenClosing();
    // Everything that can refuse the task runs before anything is created.
    const ws = body.workspace;
    const named = ws && 'id' in ws ? this.workspaces.get(ws.id).id : null;
    const files = ws && 'files' in ws ? ws.files : {};
    const facts: WorkspaceFacts = named
      ? // The stored workspace's root and its sandboxshift.yaml, read safely.
        { ...(await this.workspaces.inspect(named)), stored: true }
      : { rootEntries: checkInlineFiles(files, this.config.workspaces).rootEntries, projectFile: files[PROJECT_FILE] ?? null, stored: false };
    const plan = await this.admit(body, facts);
    if (named) {
      // Re-checked after the awaits above: a workspace deleted meanwhile is gone (delete is
      // refused once the task is queued, and nothing awaits between here and the push).
      const task = this.accept(body, plan, this.workspaces.get(named).id);
      this.workspaces.reuse(named); // named by id: a regular workspace from now on
      return task;
    }
    const workspaceId = (await this.workspaces.createFromFiles(files, plan.detection.markers)).id;
    try {
      // Creating the workspace (mkfs, mount) awaited: if the queue filled meanwhile, undo it.
      return this.accept(body, plan, workspaceId);
    } catch (err) {
      await this.workspaces.delete(workspaceId, () => false);
      throw err;
    }
  }

  /**
   * Admission: planTask, then what the engine must have (the image; its egress relay for a task
   * with an allowlist), then room in the queue. Nothing is created here.
   */
  async admit(body: CreateTaskBody, facts: WorkspaceFacts): Promise<TaskPlan> {
    this.refuseWhenClosing();
    const plan = planTask(body, facts, this.config);
    await requireImage(this.engine, plan.image, this.config);
    if (plan.network.allow.length > 0) await requireRelay(this.engine, plan.image);
    this.scheduler.requireRoom();
    return plan;
  }

  /**
   * Records an admitted task on its workspace and queues it (the queue's room is checked again:
   * the workspace's creation may have awaited, and so is shutdown). Returns the task as it was
   * accepted.
   */
  accept(body: CreateTaskBody, plan: TaskPlan, workspaceId: string): TaskRecord {
    this.refuseWhenClosing();
    this.scheduler.requireRoom();
    const task: TaskRecord = {
      id: newTaskId(),
      tenant: DEFAULT_TENANT,
      keyId: null,
      status: 'queued',
      command: body.command,
      setup: plan.setup,
      fromProjectFile: plan.fromFile,
      image: { name: plan.image, markers: plan.detection.markers },
      workspaceId,
      workspaceReadonly: plan.readonly,
      createdAt: this.clock.now().toISOString(),
      startedAt: null,
      finishedAt: null,
      durationMs: null,
      exitCode: null,
      oomKills: 0,
      reason: null,
      error: null,
      output: { stdoutBytes: 0, stderrBytes: 0, truncated: false },
      resources: plan.resources,
      timeoutSeconds: plan.timeoutSeconds,
      stdin: body.stdin,
      network: plan.network,
      env: plan.env,
    };
    const log = TaskLog.open(this.logDir(task.id));
    this.lifecycle.queued(task, log);
    this.active.set(task.id, this.newRun(task, log));
    const accepted = structuredClone(task); // the 202 reports the task as it was accepted
    this.scheduler.enqueue(task);
    return accepted;
  }

  /** New work is refused with 503 SHUTTING_DOWN once the server is stopping. */
  refuseWhenClosing(): void {
    if (!this.closing) return;
    throw new AppError('SHUTTING_DOWN', undefined, undefined, { 'retry-after': String(this.config.shutdown.retryAfterSeconds) });
  }

  /** A task's recorded egress decisions (GET /v1/tasks/:id/egress). */
  egressDecisions(id: string) {
    return this.store.egressDecisions(this.get(id).id);
  }

  cancel(id: string): TaskRecord {
    const task = this.get(id);
    const a = this.active.get(task.id);
    if (!a || TERMINAL.has(a.task.status)) throw new AppError('TASK_NOT_ACTIVE', { id: task.id, status: task.status });
    if (a.task.status === 'queued' && this.scheduler.withdraw(task.id)) {
      this.runner.finish(a, 'cancelled', 'cancelled', null);
      return a.task;
    }
    a.stoppedBy ??= 'cancel';
    if (a.sandbox) void a.sandbox.stop(this.config.sandbox.stopGraceSeconds);
    else a.abortStart?.();
    return a.task;
  }

  /** Stdin from a WebSocket client; buffered (bounded) until the container is attached. */
  writeStdin(id: string, data: Buffer | null): void {
    const a = this.active.get(id);
    const task = a?.task ?? this.get(id);
    if (!task.stdin) throw new AppError('STDIN_NOT_ENABLED', { id });
    if (!a || TERMINAL.has(task.status) || a.stdinEof) throw new AppError('TASK_NOT_ACTIVE', { id, status: task.status });
    if (data === null) {
      a.stdinEof = true;
      if (a.sandbox) a.sandbox.endStdin();
      return;
    }
    a.stdinBytes += data.length;
    if (a.stdinBytes > this.config.requests.stdinBytes) {
      throw new AppError('LIMIT_ABOVE_MAXIMUM', { field: 'stdin', bytes: a.stdinBytes, maximum: this.config.requests.stdinBytes });
    }
    if (a.sandbox) a.sandbox.writeStdin(data);
    else a.stdinPending.push(data);
  }

  /**
   * Stops admission. With shutdown.leaveRunning, running tasks are left running for the next
   * start (their workspace ids are returned: those mounts stay); otherwise they are stopped and
   * recorded as lost. Queued tasks stay queued.
   */
  async close(waitMs = 15_000): Promise<Set<string>> {
    this.closing = true;
    this.runner.closing = true;
    // Bounded: an engine that hangs must not hold the shutdown (start-up cleans up next time).
    const settled = this.scheduler.stop(waitMs);
    const leave = this.config.shutdown.leaveRunning;
    for (const a of this.active.values()) {
      if (a.sandbox) {
        if (leave) void this.runner.detach(a);
        else void a.sandbox.stop(0);
      } else if (!leave) a.abortStart?.();
    }
    await settled;
    const kept = new Set<string>();
    for (const a of this.active.values()) {
      if (a.detached) kept.add(a.task.workspaceId);
      a.egress?.close({ keepDir: a.detached });
      a.log.release();
    }
    return kept;
  }

  /** True while a task is queued or running on the workspace (DELETE answers 409 then). */
  workspaceBusy(workspaceId: string): boolean {
    for (const a of this.active.values()) if (a.task.workspaceId === workspaceId) return true;
    return false;
  }

  stats() {
    return this.scheduler.stats();
  }
}
