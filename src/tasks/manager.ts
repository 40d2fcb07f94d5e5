import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { detectImage, imageTable, resolveImage } from '../detection/detect.js';
import type { EgressProxy } from '../egress/proxy.js';
import { resolveAllowlist } from '../egress/policy.js';
import { AppError } from '../errors.js';
import { EngineError, type ContainerEngine, type OwnContainer, type RunningSandbox, type SandboxEgress } from '../runtime/engine.js';
import { LABEL_RELAY } from '../runtime/labels.js';
import { decodeCursor } from '../store/cursor.js';
import { TaskLog } from '../streaming/tasklog.js';
import { composeCommand, parseProjectFile, PROJECT_FILE } from '../workspace/projectfile.js';
import { checkInlineFiles } from '../workspace/workspaces.js';
import { resolveLimits } from './limits.js';
import { TaskLifecycle, type Clock } from './lifecycle.js';
import { classifyExit, TERMINAL, type TaskRecord, type TaskStatus } from './model.js';
import type { TaskStore, TaskWorkspaces } from './ports.js';
import type { HostUidPool } from '../runtime/host-uids.js';
import { TaskQueue } from './queue.js';
import { TaskRun, type Checkpoint } from './run.js';
import type { CreateTaskBody } from './schemas.js';

export type { Clock };

type Active = TaskRun;

/** What start-up found: the containers of tasks it adopts, and those no task owns. */
export interface RecoveryPlan {
  adopt: Map<string, OwnContainer>;
  orphans: OwnContainer[];
}

export const newTaskId = () => `tsk_${randomBytes(12).toString('base64url')}`;

/**
 * The task facade the HTTP layer talks to: admission, the queue, running through the
 * ContainerEngine, and adopting the containers an earlier run of the server left running.
 * Status transitions happen in TaskLifecycle only.
 */
export class TaskManager {
  private readonly queue: TaskQueue<TaskRecord>;
  private readonly active = new Map<string, Active>();
  private readonly finishing = new Set<Promise<void>>();
  /** Host UIDs of the tasks that have (or are creating) a container with a user namespace. */
  private readonly taskUids = new Map<string, number>();
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
    private readonly egress: EgressProxy | null = null,
    /** Host UIDs of tasks' own user namespaces; null runs every task as host UID 65532. */
    private readonly uids: HostUidPool | null = null,
  ) {
    this.queue = new TaskQueue(config.queue.concurrency, config.queue.maxQueued);
    this.lifecycle = new TaskLifecycle(store, log, clock);
  }

  /**
   * Start-up, before anything is mounted or cleaned: which of our containers belong to tasks
   * recorded `running` (adopted), and which belong to no such task (orphans, to be removed).
   */
  plan(containers: OwnContainer[]): RecoveryPlan {
    const running = new Set(this.store.tasksWithStatus(['running']).map((t) => t.id));
    const adopt = new Map<string, OwnContainer>();
    const orphans: OwnContainer[] = [];
    for (const c of containers) {
      if (running.has(c.taskId) && !adopt.has(c.taskId)) adopt.set(c.taskId, c);
      else orphans.push(c);
    }
    return { adopt, orphans };
  }

  /**
   * At start-up: tasks recorded `running` whose container is still there are adopted (their log
   * continues, their deadline stands); the others are lost. Queued tasks run.
   */
  recover(plan: RecoveryPlan): void {
    for (const t of this.store.tasksWithStatus(['running'])) {
      const a = this.newActive(t, TaskLog.open(this.logDir(t.id)));
      const container = plan.adopt.get(t.id);
      if (!container) {
        t.error = 'the server stopped while the task was running and its container is gone';
        this.finish(a, 'error', 'lost', null);
        continue;
      }
      this.active.set(t.id, a);
      this.queue.adopt(t);
      this.track(t.id, this.adopt(a, container));
    }
    for (const t of this.store.tasksWithStatus(['queued'])) {
      this.active.set(t.id, this.newActive(t, TaskLog.open(this.logDir(t.id))));
      this.queue.push(t);
    }
    this.pump();
  }

  private newActive(task: TaskRecord, log: TaskLog): Active {
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
    let rootEntries: string[];
    let existingId: string | null = null;
    let projectText: string | null;
    if (ws && 'id' in ws) {
      existingId = this.workspaces.get(ws.id).id;
      // The stored workspace's root and its sandboxshift.yaml, read safely.
      ({ rootEntries, projectFile: projectText } = await this.workspaces.inspect(existingId));
    } else {
      const files = ws?.files ?? {};
      rootEntries = checkInlineFiles(files, this.config.workspaces).rootEntries;
      projectText = files[PROJECT_FILE] ?? null;
    }
    // The workspace's sandboxshift.yaml supplies defaults; the request overrides; maxima bound both.
    const project = projectText === null ? {} : parseProjectFile(projectText);
    const { resources, timeoutSeconds, env, setup, fromFile } = resolveLimits(body, this.config, project);
    const readonly = (ws && 'id' in ws ? ws.readonly : undefined) ?? project.readonly ?? false;
    if (ws && 'id' in ws && ws.readonly === undefined && project.readonly !== undefined) fromFile.push('workspace.readonly');
    // Egress allowlist: the request's list replaces the file's, which replaces the server default.
    const network = this.allowlist(body, project.allow);
    if (body.network === undefined && project.allow !== undefined) fromFile.push('network.allow');
    const detection = detectImage(rootEntries, this.config.images);
    const image = resolveImage(body.image, detection, this.config.images);
    await this.requireImage(image);
    if (network.allow.length > 0) await this.requireRelay(image);
    const queueFull = () =>
      new AppError('QUEUE_FULL', { queued: this.queue.queuedCount, limit: this.config.queue.maxQueued }, undefined, {
        'retry-after': String(this.config.queue.retryAfterSeconds),
      });
    if (!this.queue.hasRoom()) throw queueFull();
    let workspaceId: string;
    if (existingId) {
      // Re-checked after the awaits above: a workspace deleted meanwhile is gone (delete is
      // refused once the task is queued, and nothing awaits between here and the push).
      workspaceId = this.workspaces.get(existingId).id;
      this.workspaces.reuse(workspaceId); // named by id: a regular workspace from now on
    } else {
      workspaceId = (await this.workspaces.createFromFiles(ws && 'files' in ws ? ws.files : {}, detection.markers)).id;
      // Creating the workspace (mkfs, mount) awaited: if the queue filled meanwhile, undo it.
      if (!this.queue.hasRoom()) {
        await this.workspaces.delete(workspaceId, () => false);
        throw queueFull();
      }
    }
    const task: TaskRecord = {
      id: newTaskId(),
      status: 'queued',
      command: body.command,
      setup,
      fromProjectFile: fromFile,
      image: { name: image, markers: detection.markers },
      workspaceId,
      workspaceReadonly: readonly,
      createdAt: this.clock.now().toISOString(),
      startedAt: null,
      finishedAt: null,
      durationMs: null,
      exitCode: null,
      oomKills: 0,
      reason: null,
      error: null,
      output: { stdoutBytes: 0, stderrBytes: 0, truncated: false },
      resources,
      timeoutSeconds,
      stdin: body.stdin,
      network: { allow: network.allow, unrestricted: network.unrestricted },
      env,
    };
    const log = TaskLog.open(this.logDir(task.id));
    this.lifecycle.queued(task, log);
    this.active.set(task.id, this.newActive(task, log));
    this.queue.push(task);
    const accepted = structuredClone(task); // the 202 reports the task as it was accepted
    this.pump();
    return accepted;
  }

  /**
   * Workspace intake (multipart task submission): the image and queue checks submit() makes,
   * run on the extracted files before their workspace is recorded, so that a task refused there
   * leaves no workspace behind. submit() still makes every check itself.
   */
  async precheckImageAndQueue(body: CreateTaskBody, rootEntries: string[], projectText: string | null = null): Promise<void> {
    this.refuseWhenClosing();
    // The archive's sandboxshift.yaml: malformed, above a maximum or an allowlist
    // the policy refuses is refused here too, before the workspace is recorded.
    const project = projectText === null ? {} : parseProjectFile(projectText);
    resolveLimits(body, this.config, project);
    const image = resolveImage(body.image, detectImage(rootEntries, this.config.images), this.config.images);
    await this.requireImage(image);
    if (this.allowlist(body, project.allow).allow.length > 0) await this.requireRelay(image);
    if (!this.queue.hasRoom()) {
      throw new AppError('QUEUE_FULL', { queued: this.queue.queuedCount, limit: this.config.queue.maxQueued }, undefined, {
        'retry-after': String(this.config.queue.retryAfterSeconds),
      });
    }
  }

  /** New work is refused with 503 SHUTTING_DOWN once the server is stopping. */
  refuseWhenClosing(): void {
    if (!this.closing) return;
    throw new AppError('SHUTTING_DOWN', undefined, undefined, { 'retry-after': String(this.config.shutdown.retryAfterSeconds) });
  }

  private async requireImage(image: string): Promise<void> {
    let present: boolean;
    try {
      present = await this.engine.imagePresent(image);
    } catch (err) {
      throw new AppError('ENGINE_UNAVAILABLE', { reason: (err as Error).message });
    }
    if (!present) {
      const build = imageTable(this.config.images).get(image)?.build ?? '';
      throw new AppError('IMAGE_MISSING', { image, build }, `Image ${image} is not present; build it with: ${build}`);
    }
  }

  /**
   * The task's egress allowlist (policy errors are 4xx): the request's list replaces the workspace
   * file's, which replaces the server default.
   * `workspace` is the network.allow of the workspace's sandboxshift.yaml (undefined: none).
   */
  private allowlist(body: CreateTaskBody, workspace?: string[]) {
    return resolveAllowlist({ request: body.network?.allow, workspace, serverDefault: this.config.egress.defaultAllow }, this.config.egress);
  }

  private async requireRelay(image: string): Promise<void> {
    if ((await this.relayOf(image)) !== null) return;
    throw new AppError(
      'EGRESS_RELAY_MISSING',
      { image, label: LABEL_RELAY },
      `Image ${image} has no egress relay (label ${LABEL_RELAY}), so a task in it cannot have an allowlist`,
    );
  }

  /** The relay path the image declares (label io.sandboxshift.relay), or null. */
  private async relayOf(image: string): Promise<string | null> {
    let labels: Record<string, string> | null;
    try {
      labels = await this.engine.imageLabels(image);
    } catch (err) {
      throw new AppError('ENGINE_UNAVAILABLE', { reason: (err as Error).message });
    }
    const relay = labels?.[LABEL_RELAY];
    return relay && /^\/[A-Za-z0-9._\/-]+$/.test(relay) ? relay : null;
  }

  /** A task's recorded egress decisions (GET /v1/tasks/:id/egress). */
  egressDecisions(id: string) {
    return this.store.egressDecisions(this.get(id).id);
  }

  cancel(id: string): TaskRecord {
    const task = this.get(id);
    const a = this.active.get(task.id);
    if (!a || TERMINAL.has(a.task.status)) throw new AppError('TASK_NOT_ACTIVE', { id: task.id, status: task.status });
    if (a.task.status === 'queued' && this.queue.remove(task.id)) {
      this.finish(a, 'cancelled', 'cancelled', null);
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

  private pump(): void {
    if (this.closing) return;
    for (const task of this.queue.takeRunnable()) this.track(task.id, this.run(this.active.get(task.id)!));
  }

  private track(id: string, run: Promise<void>): void {
    const p = run
      .catch((err: unknown) => this.log.error({ taskId: id, err }, 'task runner failed'))
      .finally(() => {
        this.finishing.delete(p);
        this.queue.done(id);
        this.pump();
      });
    this.finishing.add(p);
  }

  /**
   * The workspace's filesystem is mounted for the whole run (until the container is removed),
   * then its counts and usage are refreshed and it is unmounted. A task left running for the
   * next start keeps its mount.
   */
  private async run(a: Active): Promise<void> {
    const id = a.task.workspaceId;
    try {
      await this.workspaces.hold(id);
    } catch (err) {
      a.task.error = `the workspace could not be mounted: ${err instanceof Error ? err.message : String(err)}`;
      this.finish(a, 'error', 'engine_error', null);
      return;
    }
    try {
      await this.runHeld(a);
    } finally {
      if (!a.detached) {
        await this.releaseHostUid(a);
        await this.workspaces.release(id);
      }
    }
  }

  /** Once the task's container is gone: its idmapped workspace view and its host UID slot go. */
  private async releaseHostUid(a: Active): Promise<void> {
    const uid = this.taskUids.get(a.task.id);
    if (uid === undefined) return;
    this.taskUids.delete(a.task.id);
    await this.workspaces.unmap(a.task.workspaceId, uid).catch((err: unknown) => this.log.warn({ taskId: a.task.id, err }, 'idmapped workspace view not unmounted'));
    this.uids?.release(a.task.id);
  }

  /** Arms the deadline: `timeoutSeconds` after the task started, whenever this run began. */
  private armTimer(a: Active): void {
    const grace = this.config.sandbox.stopGraceSeconds;
    a.timer = setTimeout(
      () => {
        a.stoppedBy ??= 'timeout';
        if (a.sandbox) void a.sandbox.stop(grace);
        else a.abortStart?.();
      },
      Math.max(0, a.deadline - Date.now()),
    );
  }

  private async runHeld(a: Active): Promise<void> {
    const { task } = a;
    const started = this.lifecycle.running(task, a.log);
    a.openCaptures(null, false);
    // The timeout covers the container's creation too: an engine that hangs cannot hold a task.
    this.armTimer(a);
    let starting: Promise<RunningSandbox> | undefined;
    try {
      this.workspaces.ensureHome(task.workspaceId);
      const hostUid = this.uids ? this.uids.allocate(task.id) : null;
      let workspaceDir = this.workspaces.dir(task.workspaceId);
      if (hostUid !== null) {
        this.taskUids.set(task.id, hostUid);
        workspaceDir = await this.workspaces.mapFor(task.workspaceId, hostUid);
      }
      const egress = task.network.allow.length > 0 ? await this.openEgress(a, hostUid) : undefined;
      starting = this.engine.start(
        { image: task.image.name, ...task.resources },
        {
          taskId: task.id,
          command: composeCommand(task.setup, task.command),
          env: task.env,
          workspaceDir,
          workspaceReadonly: task.workspaceReadonly,
          stdin: task.stdin,
          hostUid,
          egress,
          backstopSeconds: task.timeoutSeconds + this.config.sandbox.backstopSeconds,
        },
        a.handlers(),
      );
      const aborted = new Promise<never>((_, reject) => {
        a.abortStart = () => reject(new EngineError(a.stoppedBy === 'timeout' ? `the sandbox did not start within the task's timeout (${task.timeoutSeconds} s)` : 'stopped while starting'));
      });
      a.sandbox = await Promise.race([starting, aborted]);
      a.recordContainer(a.sandbox.containerId);
    } catch (err) {
      clearTimeout(a.timer);
      const message = err instanceof Error ? err.message : String(err);
      this.log.error({ taskId: task.id, err: message }, 'sandbox did not start');
      task.error = `the sandbox could not start: ${message}`;
      if (a.stoppedBy === 'cancel') this.finish(a, 'cancelled', 'cancelled', null, started);
      else if (a.stoppedBy === 'timeout') this.finish(a, 'timed_out', 'timeout', null, started);
      else if (this.closing) this.finish(a, 'error', 'lost', null, started);
      else {
        const missing = err instanceof EngineError && !err.unavailable && !(await this.engine.imagePresent(task.image.name).catch(() => true));
        this.finish(a, 'error', missing ? 'image_missing' : 'engine_error', null, started);
      }
      // A sandbox that starts after the runner gave up on it is stopped and removed; until then it
      // keeps its run slot (and its workspace), since a container really is being created.
      await starting?.then(
        (late) => late.stop(0).then(() => late.exit),
        () => undefined,
      );
      return;
    } finally {
      a.abortStart = undefined;
    }
    this.log.info({ taskId: task.id, containerId: a.sandbox.containerId, image: task.image.name }, 'task started');
    await this.follow(a, started, false);
  }

  /** Continues a task an earlier run of the server left running (or that exited meanwhile). */
  private async adopt(a: Active, container: OwnContainer): Promise<void> {
    const { task } = a;
    const started = new Date(task.startedAt ?? this.clock.now().toISOString());
    let held = false;
    try {
      this.workspaces.adopt(task.workspaceId);
      held = true;
      const checkpoint: Checkpoint | null = a.readCheckpoint();
      const from = checkpoint?.containerId === container.containerId ? checkpoint : null;
      a.openCaptures(from ?? { containerId: container.containerId, position: null, produced: { stdout: 0, stderr: 0 } }, true);
      this.armTimer(a);
      // The slot its container was created with (its label): no new task gets that host UID.
      if (container.hostUid !== null) {
        if (this.uids && !this.uids.adopt(task.id, container.hostUid)) throw new Error(`its host UID ${container.hostUid} is outside sandbox.userNamespaces or taken`);
        this.taskUids.set(task.id, container.hostUid);
      }
      if (task.network.allow.length > 0 && container.running) await this.openEgress(a, container.hostUid);
      const sandbox = await this.engine.adopt(container.containerId, { stdin: task.stdin, from: from?.position ?? null }, a.handlers());
      if (!sandbox) {
        clearTimeout(a.timer);
        task.error = 'the container disappeared while the server was down';
        this.finish(a, 'error', 'lost', null, started);
        return;
      }
      a.sandbox = sandbox;
      this.log.info({ taskId: task.id, containerId: sandbox.containerId, running: container.running }, 'task adopted after a restart');
      await this.follow(a, started, true);
    } catch (err) {
      clearTimeout(a.timer);
      task.error = `the task could not be adopted after a restart: ${err instanceof Error ? err.message : String(err)}`;
      this.finish(a, 'error', 'lost', null, started);
      await this.engine.remove(container.containerId).catch(() => undefined);
    } finally {
      if (held && !a.detached) {
        await this.releaseHostUid(a);
        await this.workspaces.release(task.workspaceId);
      }
    }
  }

  /** From a started (or adopted) sandbox to the task's end. */
  private async follow(a: Active, started: Date, adopted: boolean): Promise<void> {
    const { task } = a;
    const sandbox = a.sandbox!;
    const grace = this.config.sandbox.stopGraceSeconds;
    for (const chunk of a.stdinPending) sandbox.writeStdin(chunk);
    a.stdinPending = [];
    if (a.stdinEof) sandbox.endStdin();
    // A cancel or a shutdown that arrived while the container was being created.
    if (a.stoppedBy) void sandbox.stop(grace);
    else if (this.closing) {
      if (this.config.shutdown.leaveRunning) await this.detach(a);
      else void sandbox.stop(0);
    }
    const exit = await Promise.race([sandbox.exit, a.whenDetached]).finally(() => clearTimeout(a.timer));
    if (exit === 'detached') return;

    task.output = a.finishOutput();
    task.oomKills = exit.oomKills;
    if (exit.vanished) {
      task.error = 'the container disappeared before its exit could be read';
      this.finish(a, 'error', 'lost', null, started);
      return;
    }
    if (this.closing && !a.stoppedBy) {
      // The server stopped it on the way down: not the task's own failure.
      task.error = 'the server shut down while the task was running';
      this.finish(a, 'error', 'lost', exit.exitCode, started);
      return;
    }
    // An adopted task: whether the deadline ended it is the engine's record of when it stopped.
    if (adopted && exit.finishedAt && a.stoppedBy !== 'cancel') {
      a.stoppedBy = exit.finishedAt.getTime() >= a.deadline - 50 ? 'timeout' : null;
    }
    const { status, reason } = classifyExit(exit, a.stoppedBy);
    if (status === 'error') task.error = 'the engine reported no exit code for the container';
    // A failed task that left its workspace full filled its quota: reason disk_quota.
    const usage = await this.workspaces.afterTask(task.workspaceId).catch((err: unknown) => {
      this.log.warn({ taskId: task.id, err }, 'workspace usage could not be read');
      return { full: false };
    });
    const quota = status === 'failed' && reason === null && !task.workspaceReadonly && usage.full;
    // An adopted task's end is when the engine says its container stopped.
    const at = adopted && exit.finishedAt && exit.finishedAt.getTime() >= started.getTime() ? exit.finishedAt : undefined;
    this.finish(a, status, quota ? 'disk_quota' : reason, exit.exitCode, started, at);
  }

  /** Leaves the task's container running for the next start: log, mount and socket stay. */
  private async detach(a: Active): Promise<void> {
    if (a.detached) return;
    clearTimeout(a.timer);
    a.egress?.close({ keepDir: true });
    a.egress = null;
    a.markDetached();
    await a.sandbox?.detach();
  }

  /** Opens the task's proxy listener before its container exists (closed in finish()). */
  private async openEgress(a: Active, hostUid: number | null): Promise<SandboxEgress> {
    if (!this.egress) throw new Error('this task manager has no egress proxy');
    const relay = await this.relayOf(a.task.image.name);
    if (relay === null) throw new EngineError(`image ${a.task.image.name} no longer has an egress relay (label ${LABEL_RELAY})`);
    a.egress = await this.egress.open(a.task.id, a.task.network.allow, hostUid ?? undefined);
    return { socketDir: a.egress.socketDir, relay, port: this.config.egress.relayPort };
  }

  /** The one place a task reaches a terminal state: listener closed, recorded, forgotten. */
  private finish(a: Active, status: TaskStatus, reason: TaskRecord['reason'], exitCode: number | null, started?: Date, at?: Date): void {
    // Nothing the server opened for the task outlives it: its proxy socket and tunnels go first.
    a.egress?.close();
    a.egress = null;
    this.lifecycle.finish(a.task, a.log, status, reason, exitCode, started, at);
    this.active.delete(a.task.id);
  }

  /**
   * Stops admission. With shutdown.leaveRunning, running tasks are left running for the next
   * start (their workspace ids are returned: those mounts stay); otherwise they are stopped and
   * recorded as lost. Queued tasks stay queued.
   */
  async close(waitMs = 15_000): Promise<Set<string>> {
    this.closing = true;
    const leave = this.config.shutdown.leaveRunning;
    for (const a of this.active.values()) {
      if (a.sandbox) {
        if (leave) void this.detach(a);
        else void a.sandbox.stop(0);
      } else if (!leave) a.abortStart?.();
    }
    // Bounded: an engine that hangs must not hold the shutdown (start-up cleans up next time).
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((r) => (timer = setTimeout(r, waitMs)));
    await Promise.race([Promise.allSettled([...this.finishing]), deadline]);
    clearTimeout(timer);
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
    return { queued: this.queue.queuedCount, running: this.queue.runningCount };
  }
}
