import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Principal } from '../auth/principal.js';
import type { Config } from '../config/schema.js';
import type { EgressProxy } from '../egress/proxy.js';
import { AppError } from '../errors.js';
import type { ContainerEngine, OwnContainer, SandboxShape } from '../runtime/engine.js';
import type { HostUidPool } from '../runtime/host-uids.js';
import { decodeCursor } from '../store/cursor.js';
import { TaskLog } from '../streaming/tasklog.js';
import { PROJECT_FILE } from '../workspace/projectfile.js';
import { checkInlineFiles } from '../workspace/workspaces.js';
import { planTask, requireImage, requireRelay, type TaskPlan, type WorkspaceFacts } from './admission.js';
import { TaskLifecycle, type Clock } from './lifecycle.js';
import { TERMINAL, type TaskRecord, type TaskStatus } from './model.js';
import { IsolationAvailability, requireUsable } from './isolation.js';
import type { TaskStore, TaskWorkspaces } from './ports.js';
import { planRecovery, type RecoveryPlan } from './recovery.js';
import { TaskRun } from './run.js';
import { TaskRunner } from './runner.js';
import { TaskScheduler } from './scheduler.js';
import type { CreateTaskBody } from './schemas.js';
import type { SecretVault } from './vault.js';

export type { Clock, RecoveryPlan };

export const newTaskId = () => `tsk_${randomBytes(12).toString('base64url')}`;

/** The warm pool as the manager sees it. */
export interface WarmReservations {
  /** A ready pre-started sandbox of the shape: its empty workspace becomes the task's (its id), or null. */
  reserve(shape: SandboxShape, markers: string[], tenant: string): string | null;
  /**
   * True when a pre-started sandbox of the shape is ready now. Its live attach connection tells
   * that the engine answers, and its running container that its image is there.
   */
  ready?(shape: SandboxShape): boolean;
}

/** Whom a task is submitted by: the request's tenant and API key. */
export type TaskOwner = Pick<Principal, 'tenant' | 'keyId'>;

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
    private readonly log: Logger,
    private readonly clock: Clock = { now: () => new Date() },
    /** Egress proxy for tasks with an allowlist; null refuses to run such tasks. */
    egress: EgressProxy | null = null,
    /** Which isolations can run tasks now (a task asking for an unusable one is refused). */
    private readonly isolations: IsolationAvailability = new IsolationAvailability(),
    /** The warm pool: a task that brings no workspace takes a pre-started sandbox's empty one. */
    private readonly warm: WarmReservations | null = null,
    /** Where queued and running tasks' secretEnv is kept (encrypted); null refuses such tasks. */
    private readonly vault: SecretVault | null = null,
    /** Host UIDs of runc tasks' own user namespaces; null runs every task as host UID 65532. */
    uids: HostUidPool | null = null,
  ) {
    this.lifecycle = new TaskLifecycle(store, log, clock);
    this.runner = new TaskRunner(config, engine, workspaces, this.lifecycle, log, clock, egress, (id) => this.forget(id), uids);
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
    const kept = new Set<string>();
    for (const t of this.store.tasksWithStatus(['running'])) {
      const secrets = this.storedSecrets(t);
      const a = this.newRun(t, TaskLog.open(this.logDir(t.id)), secrets ?? {});
      const container = plan.adopt.get(t.id);
      if (!container || secrets === null) {
        t.error = !container
          ? 'the server stopped while the task was running and its container is gone'
          : 'its secrets could not be read after the restart, so its output could not be masked';
        this.runner.finish(a, 'error', 'lost', null);
        if (container) void this.engine.remove(container.containerId);
        continue;
      }
      kept.add(t.id);
      this.active.set(t.id, a);
      this.scheduler.adoptRunning(t, this.runner.adopt(a, container));
    }
    for (const t of this.store.tasksWithStatus(['queued'])) {
      const secrets = this.storedSecrets(t);
      const a = this.newRun(t, TaskLog.open(this.logDir(t.id)), secrets ?? {});
      if (secrets === null) {
        t.error = 'its secrets could not be read after the restart';
        this.runner.finish(a, 'error', 'lost', null);
        continue;
      }
      kept.add(t.id);
      this.active.set(t.id, a);
      this.scheduler.requeue(t);
    }
    // Secrets of tasks that ended while no server ran (or whose end was recorded just before a crash).
    this.vault?.sweep(kept);
    this.scheduler.pump();
  }

  /** A recovered task's secretEnv ({} without any); null when it has some that cannot be read. */
  private storedSecrets(t: TaskRecord): Record<string, string> | null {
    if (!t.secretEnvKeys?.length) return {};
    try {
      return this.vault?.get(t.id) ?? null;
    } catch (err) {
      this.log.error({ taskId: t.id, err: (err as Error).message }, 'stored secrets unreadable');
      return null;
    }
  }

  private newRun(task: TaskRecord, log: TaskLog, secretEnv: Readonly<Record<string, string>> = {}): TaskRun {
    return new TaskRun(task, log, this.config.output, secretEnv);
  }

  /** A task that reached its terminal state leaves, and its stored secrets go with it. */
  private forget(id: string): void {
    const had = this.active.get(id)?.task.secretEnvKeys?.length;
    this.active.delete(id);
    if (!had) return;
    try {
      this.vault?.delete(id);
    } catch (err) {
      this.log.warn({ taskId: id, err: (err as Error).message }, 'stored secrets could not be deleted');
    }
  }

  logDir(id: string): string {
    return join(this.logsDir, id);
  }

  get(id: string): TaskRecord {
    const t = /^tsk_[A-Za-z0-9_-]{1,64}$/.test(id) ? (this.active.get(id)?.task ?? this.store.getTask(id)) : null;
    if (!t) throw new AppError('TASK_NOT_FOUND', { id });
    return t;
  }

  /** A page of tasks, newest first; `tenant` narrows it to that tenant's. */
  list(q: { status?: TaskStatus; tenant?: string; limit: number; cursor?: string }) {
    let cursor: number | undefined;
    if (q.cursor !== undefined) {
      const c = decodeCursor(q.cursor);
      if (c === null) throw new AppError('VALIDATION_FAILED', { issues: [{ path: 'cursor', message: 'not a cursor this server issued' }] });
      cursor = c;
    }
    if (q.limit > this.config.requests.listLimit) {
      throw new AppError('LIMIT_ABOVE_MAXIMUM', { field: 'limit', value: q.limit, maximum: this.config.requests.listLimit });
    }
    return this.store.listTasks({
      ...(q.status ? { status: q.status } : {}),
      ...(q.tenant !== undefined ? { tenant: q.tenant } : {}),
      limit: q.limit,
      ...(cursor !== undefined ? { cursor } : {}),
    });
  }

  /** The log of a task (live, or opened from disk for finished ones). */
  taskLog(id: string): TaskLog {
    const task = this.get(id);
    return this.active.get(task.id)?.log ?? TaskLog.open(this.logDir(task.id));
  }

  /**
   * Admits and queues a task for `owner`: a workspace named by id must be the owner's tenant's
   * (another tenant's reads as WORKSPACE_NOT_FOUND, as one that does not exist).
   */
  async submit(body: CreateTaskBody, owner: TaskOwner): Promise<TaskRecord> {
    this.refuseWhenClosing();
    // Everything that can refuse the task runs before anything is created.
    const ws = body.workspace;
    const named = ws && 'id' in ws ? this.ownWorkspace(ws.id, owner.tenant) : null;
    const files = ws && 'files' in ws ? ws.files : {};
    const facts: WorkspaceFacts = named
      ? // The stored workspace's root and its sandboxshift.yaml, read safely.
        { ...(await this.workspaces.inspect(named)), stored: true }
      : { rootEntries: checkInlineFiles(files, this.config.workspaces).rootEntries, projectFile: files[PROJECT_FILE] ?? null, stored: false };
    const plan = await this.admit(body, facts, owner.tenant, named ? null : files);
    if (named) {
      // Re-checked after the awaits above: a workspace deleted meanwhile is gone (delete is
      // refused once the task is queued, and nothing awaits between here and the push).
      const task = this.accept(body, plan, this.ownWorkspace(named, owner.tenant), owner);
      this.workspaces.reuse(named); // named by id: a regular workspace from now on
      return task;
    }
    const spare = this.reserveWarm(files, plan, owner.tenant);
    if (spare) return this.accept(body, plan, spare, owner);
    if (plan.imageVouched) await requireImage(this.engine, plan.image, this.config); // the pool's member went meanwhile
    const workspaceId = (await this.workspaces.createFromFiles(files, plan.detection.markers, owner.tenant)).id;
    try {
      // Creating the workspace (mkfs, mount) awaited: if the queue filled meanwhile, undo it.
      return this.accept(body, plan, workspaceId, owner);
    } catch (err) {
      await this.workspaces.delete(workspaceId, () => false);
      throw err;
    }
  }

  /**
   * A runc task with no files and no allowlist that starts now (a run slot is free, so a
   * pre-started sandbox is never held by a waiting task) takes the empty workspace of a
   * pre-started sandbox of its shape; null when there is none.
   */
  private reserveWarm(files: Record<string, string>, plan: TaskPlan, tenant: string): string | null {
    if (!this.warm || !this.warmCandidate(files, plan)) return null;
    return this.warm.reserve({ image: plan.image, ...plan.resources, isolation: plan.isolation }, plan.detection.markers, tenant);
  }

  private warmCandidate(files: Record<string, string>, plan: TaskPlan): boolean {
    const { queued, running } = this.scheduler.stats();
    return plan.isolation === 'runc' && Object.keys(files).length === 0 && plan.network.allow.length === 0 && queued + running < this.config.queue.concurrency;
  }

  /**
   * Admission: planTask, then whether its isolation can run here now, then what the engine must
   * have (the image; its egress relay for a task with an allowlist), then room in the queue for
   * one more of `tenant`'s tasks. Nothing is created here.
   */
  async admit(body: CreateTaskBody, facts: WorkspaceFacts, tenant: string, warmFiles: Record<string, string> | null = null): Promise<TaskPlan & { imageVouched?: boolean }> {
    this.refuseWhenClosing();
    const plan: TaskPlan & { imageVouched?: boolean } = planTask(body, facts, this.config);
    requireUsable(plan.isolation, this.isolations);
    // A task that a ready pre-started sandbox will take (`warmFiles`: its inline files) needs no
    // engine call here: that sandbox vouches for the engine and the image.
    const shape = { image: plan.image, ...plan.resources, isolation: plan.isolation };
    plan.imageVouched = warmFiles !== null && this.warmCandidate(warmFiles, plan) && this.warm?.ready?.(shape) === true;
    if (!plan.imageVouched) await requireImage(this.engine, plan.image, this.config);
    if (plan.network.allow.length > 0) {
      const refusal = this.engine.egressRefusal?.() ?? null;
      if (refusal) throw new AppError('EGRESS_POLICY_UNENFORCED', { reason: refusal });
      // A proxy-URL engine needs no relay in the image.
      if (this.engine.egressVia !== 'proxy-url') await requireRelay(this.engine, plan.image);
    }
    this.scheduler.requireRoom(tenant);
    return plan;
  }

  /** The id of workspace `id` if it is `tenant`'s; another tenant's reads as one that does not exist. */
  private ownWorkspace(id: string, tenant: string): string {
    const w = this.workspaces.get(id);
    if (w.tenant !== tenant) throw new AppError('WORKSPACE_NOT_FOUND', { id });
    return w.id;
  }

  /**
   * Records an admitted task of `owner` on its workspace and queues it (the queue's room is checked again:
   * the workspace's creation may have awaited, and so is shutdown). Returns the task as it was
   * accepted.
   */
  accept(body: CreateTaskBody, plan: TaskPlan, workspaceId: string, owner: TaskOwner): TaskRecord {
    this.refuseWhenClosing();
    this.scheduler.requireRoom(owner.tenant);
    const secretEnvKeys = Object.keys(plan.secretEnv).sort();
    const task: TaskRecord = {
      id: newTaskId(),
      secretEnvKeys,
      tenant: owner.tenant,
      keyId: owner.keyId,
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
      isolation: plan.isolation,
      env: plan.env,
    };
    if (secretEnvKeys.length > 0) this.keepSecrets(task.id, plan.secretEnv);
    const log = TaskLog.open(this.logDir(task.id));
    this.lifecycle.queued(task, log);
    this.active.set(task.id, this.newRun(task, log, plan.secretEnv));
    const accepted = structuredClone(task); // the 202 reports the task as it was accepted
    this.scheduler.enqueue(task);
    return accepted;
  }

  /** Stores a task's secretEnv (encrypted) before the task is recorded; a failure refuses the task. */
  private keepSecrets(id: string, secretEnv: Readonly<Record<string, string>>): void {
    try {
      if (!this.vault) throw new Error('this server keeps no secrets');
      this.vault.put(id, secretEnv);
    } catch (err) {
      this.log.error({ taskId: id, err: (err as Error).message }, 'secrets could not be stored');
      throw new AppError('INTERNAL');
    }
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
