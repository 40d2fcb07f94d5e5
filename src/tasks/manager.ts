import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { detectImage, imageTable, resolveImage } from '../detection/detect.js';
import type { EgressProxy, TaskEgress } from '../egress/proxy.js';
import { resolveAllowlist } from '../egress/policy.js';
import { AppError } from '../errors.js';
import { EngineError, type ContainerEngine, type RunningSandbox, type SandboxEgress, type StreamName } from '../runtime/engine.js';
import { LABEL_RELAY } from '../runtime/labels.js';
import { decodeCursor, type Store } from '../store/sqlite.js';
import { StreamCapture } from '../streaming/capture.js';
import { TaskLog } from '../streaming/tasklog.js';
import { composeCommand, parseProjectFile, PROJECT_FILE } from '../workspace/projectfile.js';
import { checkInlineFiles, type Workspaces } from '../workspace/workspaces.js';
import { resolveLimits } from './limits.js';
import { classifyExit, TERMINAL, type TaskRecord, type TaskStatus } from './model.js';
import { TaskQueue } from './queue.js';
import type { CreateTaskBody } from './schemas.js';

export interface Clock {
  now(): Date;
}

interface Active {
  task: TaskRecord;
  log: TaskLog;
  sandbox: RunningSandbox | null;
  stoppedBy: 'timeout' | 'cancel' | null;
  stdinPending: Buffer[];
  stdinBytes: number;
  stdinEof: boolean;
  /** Set while the container is being created: gives up on a start that hangs. */
  abortStart?: (() => void) | undefined;
  /** The task's egress proxy listener (tasks with an allowlist), closed in finish(). */
  egress?: TaskEgress | null;
}

export const newTaskId = () => `tsk_${randomBytes(12).toString('base64url')}`;

/**
 * Owns the task lifecycle: admission, the queue, running through the ContainerEngine, recording
 * output into each task's log, and the one place where status transitions happen.
 */
export class TaskManager {
  private readonly queue: TaskQueue<TaskRecord>;
  private readonly active = new Map<string, Active>();
  private readonly finishing = new Set<Promise<void>>();
  private closing = false;

  constructor(
    private readonly config: Readonly<Config>,
    private readonly engine: ContainerEngine,
    private readonly store: Store,
    private readonly workspaces: Workspaces,
    private readonly logsDir: string,
    private readonly log: Logger,
    private readonly clock: Clock = { now: () => new Date() },
    /** Egress proxy for tasks with an allowlist; null refuses to run such tasks. */
    private readonly egress: EgressProxy | null = null,
  ) {
    this.queue = new TaskQueue(config.queue.concurrency, config.queue.maxQueued);
  }

  /** At start-up: tasks that were running when the server died are lost; queued ones run. */
  recover(): void {
    for (const t of this.store.tasksWithStatus(['running'])) {
      t.error = 'the server stopped while the task was running';
      this.finish(this.newActive(t, TaskLog.open(this.logDir(t.id))), 'error', 'lost', null);
    }
    for (const t of this.store.tasksWithStatus(['queued'])) {
      this.active.set(t.id, this.newActive(t, TaskLog.open(this.logDir(t.id))));
      this.queue.push(t);
    }
    this.pump();
  }

  private newActive(task: TaskRecord, log: TaskLog): Active {
    return { task, log, sandbox: null, stoppedBy: null, stdinPending: [], stdinBytes: 0, stdinEof: false };
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
    if (this.closing) throw new AppError('ENGINE_UNAVAILABLE', { reason: 'server is shutting down' });
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
    this.store.insertTask(task);
    log.append({ type: 'status', status: 'queued' });
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
    for (const task of this.queue.takeRunnable()) {
      const a = this.active.get(task.id)!;
      const p = this.run(a)
        .catch((err: unknown) => this.log.error({ taskId: task.id, err }, 'task runner failed'))
        .finally(() => {
          this.finishing.delete(p);
          this.queue.done(task.id);
          this.pump();
        });
      this.finishing.add(p);
    }
  }

  /**
   * The workspace's filesystem is mounted for the whole run (until the container
   * is removed), then its counts and usage are refreshed and it is unmounted.
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
      await this.workspaces.release(id);
    }
  }

  private async runHeld(a: Active): Promise<void> {
    const { task, log } = a;
    const started = this.clock.now();
    task.status = 'running';
    task.startedAt = started.toISOString();
    this.store.updateTask(task);
    log.append({ type: 'status', status: 'running' });

    const { headBytes, tailBytes, frameBytes } = this.config.output;
    const capture = (stream: StreamName) =>
      new StreamCapture(headBytes, tailBytes, frameBytes, {
        text: (data) => log.append({ type: stream, data }),
        bytes: (data) => log.appendBytes(stream, data),
      });
    const captures = { stdout: capture('stdout'), stderr: capture('stderr') };

    const grace = this.config.sandbox.stopGraceSeconds;
    // The timeout covers the container's creation too: an engine that hangs cannot hold a task.
    const timer = setTimeout(() => {
      a.stoppedBy ??= 'timeout';
      if (a.sandbox) void a.sandbox.stop(grace);
      else a.abortStart?.();
    }, task.timeoutSeconds * 1000);
    let starting: Promise<RunningSandbox> | undefined;
    try {
      this.workspaces.ensureHome(task.workspaceId);
      const egress = task.network.allow.length > 0 ? await this.openEgress(a) : undefined;
      starting = this.engine.start(
        {
          taskId: task.id,
          image: task.image.name,
          command: composeCommand(task.setup, task.command),
          env: task.env,
          workspaceDir: this.workspaces.dir(task.workspaceId),
          workspaceReadonly: task.workspaceReadonly,
          ...task.resources,
          stdin: task.stdin,
          egress,
        },
        // Output of a sandbox the runner already gave up on has nowhere to go.
        { onOutput: (stream, data) => !log.finished && captures[stream].push(data) },
      );
      const aborted = new Promise<never>((_, reject) => {
        a.abortStart = () => reject(new EngineError(a.stoppedBy === 'timeout' ? `the sandbox did not start within the task's timeout (${task.timeoutSeconds} s)` : 'stopped while starting'));
      });
      a.sandbox = await Promise.race([starting, aborted]);
    } catch (err) {
      clearTimeout(timer);
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
    const sandbox = a.sandbox;
    this.log.info({ taskId: task.id, containerId: sandbox.containerId, image: task.image.name }, 'task started');
    for (const chunk of a.stdinPending) sandbox.writeStdin(chunk);
    a.stdinPending = [];
    if (a.stdinEof) sandbox.endStdin();
    // A cancel or a shutdown that arrived while the container was being created.
    if (a.stoppedBy) void sandbox.stop(grace);
    else if (this.closing) void sandbox.stop(0);
    const exit = await sandbox.exit.finally(() => clearTimeout(timer));

    let truncated = false;
    for (const stream of ['stdout', 'stderr'] as const) {
      const { tail, dropped } = captures[stream].finish();
      if (dropped > 0) {
        truncated = true;
        log.append({ type: 'gap', stream, droppedBytes: dropped });
      }
      if (tail.length) {
        log.appendBytes(stream, tail);
        for (const text of StreamCapture.frames(tail, frameBytes)) log.append({ type: stream, data: text });
      }
    }
    task.output = { stdoutBytes: captures.stdout.produced, stderrBytes: captures.stderr.produced, truncated };
    task.oomKills = exit.oomKills;
    if (this.closing && !a.stoppedBy) {
      // The server stopped it on the way down: not the task's own failure.
      task.error = 'the server shut down while the task was running';
      this.finish(a, 'error', 'lost', exit.exitCode, started);
      return;
    }
    const { status, reason } = classifyExit(exit, a.stoppedBy);
    if (status === 'error') task.error = 'the engine reported no exit code for the container';
    // A failed task that left its workspace full filled its quota: reason disk_quota.
    const usage = await this.workspaces.afterTask(task.workspaceId).catch((err: unknown) => {
      this.log.warn({ taskId: task.id, err }, 'workspace usage could not be read');
      return { full: false };
    });
    const quota = status === 'failed' && reason === null && !task.workspaceReadonly && usage.full;
    this.finish(a, status, quota ? 'disk_quota' : reason, exit.exitCode, started);
  }

  /** Opens the task's proxy listener before its container exists (closed in finish()). */
  private async openEgress(a: Active): Promise<SandboxEgress> {
    if (!this.egress) throw new Error('this task manager has no egress proxy');
    const relay = await this.relayOf(a.task.image.name);
    if (relay === null) throw new EngineError(`image ${a.task.image.name} no longer has an egress relay (label ${LABEL_RELAY})`);
    a.egress = await this.egress.open(a.task.id, a.task.network.allow);
    return { socketPath: a.egress.socketPath, relay, port: this.config.egress.relayPort };
  }

  /** The one place a task reaches a terminal state: record, exit frame, forget. */
  private finish(a: Active, status: TaskStatus, reason: TaskRecord['reason'], exitCode: number | null, started?: Date): void {
    const { task, log } = a;
    // Nothing the server opened for the task outlives it: its proxy socket and tunnels go first.
    a.egress?.close();
    a.egress = null;
    const now = this.clock.now();
    task.status = status;
    task.reason = reason;
    task.exitCode = exitCode;
    task.finishedAt = now.toISOString();
    task.durationMs = started ? now.getTime() - started.getTime() : null;
    this.store.updateTask(task);
    if (!log.finished) log.append({ type: 'exit', status, exitCode, reason, durationMs: task.durationMs });
    this.active.delete(task.id);
    this.log.info({ taskId: task.id, status, reason, exitCode, durationMs: task.durationMs }, 'task finished');
  }

  /** Stops admission; running tasks are stopped and recorded as lost, queued ones stay queued. */
  async close(waitMs = 15_000): Promise<void> {
    this.closing = true;
    for (const a of this.active.values()) {
      if (a.sandbox) void a.sandbox.stop(0);
      else a.abortStart?.();
    }
    // Bounded: an engine that hangs must not hold the shutdown (the reaper cleans up next start).
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((r) => (timer = setTimeout(r, waitMs)));
    await Promise.race([Promise.allSettled([...this.finishing]), deadline]);
    clearTimeout(timer);
    for (const a of this.active.values()) {
      a.egress?.close();
      a.log.release();
    }
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
