import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import type { EgressProxy } from '../egress/proxy.js';
import { EngineError, type ContainerEngine, type OwnContainer, type RunningSandbox, type SandboxEgress } from '../runtime/engine.js';
import type { HostUidPool } from '../runtime/host-uids.js';
import { LABEL_RELAY, LABEL_RELAY_STDIN } from '../runtime/labels.js';
import { composeCommand } from '../workspace/projectfile.js';
import { imageRelay, imageStdinRelay } from './admission.js';
import type { Clock, TaskLifecycle } from './lifecycle.js';
import { classifyExit, type TaskRecord, type TaskStatus } from './model.js';
import type { TaskWorkspaces } from './ports.js';
import type { Checkpoint, TaskRun } from './run.js';

/**
 * Runs one task from its workspace's mount to its end: starts (or adopts) its sandbox through
 * the ContainerEngine, arms its deadline, follows it to its exit and classifies that. Status
 * changes go through TaskLifecycle.
 */
export class TaskRunner {
  /** Set once the server is stopping: a sandbox that starts now is detached or stopped at once. */
  closing = false;

  constructor(
    private readonly config: Readonly<Config>,
    private readonly engine: ContainerEngine,
    private readonly workspaces: TaskWorkspaces,
    private readonly lifecycle: TaskLifecycle,
    private readonly log: Logger,
    private readonly clock: Clock,
    /** Egress proxy for tasks with an allowlist; null refuses to run such tasks. */
    private readonly egress: EgressProxy | null,
    /** Called once a task reached its terminal state. */
    private readonly forget: (id: string) => void,
    /** Host UIDs of tasks' own user namespaces; null runs every task as host UID 65532. */
    private readonly uids: HostUidPool | null = null,
  ) {}

  /** Host UIDs of the tasks that have (or are creating) a container with a user namespace. */
  private readonly taskUids = new Map<string, number>();
  /** Tasks whose UID's idmapped view of their workspace is mounted (unmounted after the exit). */
  private readonly mappedViews = new Set<string>();

  /**
   * The workspace's filesystem is mounted for the whole run (until the container is removed),
   * then its counts and usage are refreshed and it is unmounted. A task left running for the
   * next start keeps its mount.
   */
  async run(a: TaskRun): Promise<void> {
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
  private async releaseHostUid(a: TaskRun): Promise<void> {
    const uid = this.taskUids.get(a.task.id);
    if (uid === undefined) return;
    this.taskUids.delete(a.task.id);
    if (this.mappedViews.delete(a.task.id)) await this.workspaces.unmap(a.task.workspaceId, uid).catch((err: unknown) => this.log.warn({ taskId: a.task.id, err }, 'idmapped workspace view not unmounted'));
    this.uids?.release(a.task.id);
  }

  /**
   * A pre-started sandbox runs the task as the sandbox's own host UID (the engine handed its slot
   * to the task): the view of the workspace for the task's own UID goes, the sandbox's is the
   * task's from now on (unmounted after the exit).
   */
  private async tookSandboxUid(a: TaskRun, sandbox: RunningSandbox, own: number | null): Promise<void> {
    if (sandbox.hostUid === undefined || own === null || sandbox.hostUid === own) return;
    this.taskUids.set(a.task.id, sandbox.hostUid);
    // The view of the sandbox's UID is the task's from now on (the engine made it, or the
    // sandbox runs in a spare workspace of its own); one for the task's own UID goes if made.
    const ownView = this.mappedViews.delete(a.task.id);
    this.mappedViews.add(a.task.id);
    if (ownView) await this.workspaces.unmap(a.task.workspaceId, own).catch((err: unknown) => this.log.warn({ taskId: a.task.id, err }, 'idmapped workspace view not unmounted'));
  }

  /** Arms the deadline: `timeoutSeconds` after the task started, whenever this run began. */
  private armTimer(a: TaskRun): void {
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

  private async runHeld(a: TaskRun): Promise<void> {
    const { task } = a;
    const started = this.lifecycle.running(task, a.log);
    a.openCaptures(null, false);
    // The timeout covers the container's creation too: an engine that hangs cannot hold a task.
    this.armTimer(a);
    let starting: Promise<RunningSandbox> | undefined;
    try {
      this.workspaces.ensureHome(task.workspaceId);
      // runc tasks only: gVisor's runsc is not given a user namespace (its tasks stay host UID 65532).
      const isolation = task.isolation ?? 'runc';
      const hostUid = this.uids && isolation === 'runc' ? this.uids.allocate(task.id) : null;
      const workspaceDir = this.workspaces.dir(task.workspaceId);
      let workspaceView: (() => Promise<string>) | undefined;
      if (hostUid !== null) {
        this.taskUids.set(task.id, hostUid);
        // Made only when the task starts cold: a pooled sandbox brings its own UID's view.
        workspaceView = async () => {
          const view = await this.workspaces.mapFor(task.workspaceId, hostUid);
          this.mappedViews.add(task.id);
          return view;
        };
      }
      const egress = task.network.allow.length > 0 ? await this.openEgress(a, hostUid) : undefined;
      const stdinRelay = task.stdin ? await this.stdinRelay(a) : undefined;
      starting = this.engine.start(
        { image: task.image.name, ...task.resources, isolation },
        {
          taskId: task.id,
          command: composeCommand(task.setup, task.command),
          env: task.env,
          secretEnv: a.secretEnv,
          workspaceDir,
          workspaceView,
          workspaceId: task.workspaceId,
          workspaceReadonly: task.workspaceReadonly,
          stdin: task.stdin,
          stdinRelay,
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
      await this.tookSandboxUid(a, a.sandbox, hostUid);
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
      const own = this.taskUids.get(task.id) ?? null;
      await starting?.then(
        (late) => this.tookSandboxUid(a, late, own).then(() => late.stop(0)).then(() => late.exit),
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
  async adopt(a: TaskRun, container: OwnContainer): Promise<void> {
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
        if (this.uids && !this.uids.adopt(task.id, container.hostUid)) throw new Error(`its host UID ${container.hostUid} is held by another task`);
        this.taskUids.set(task.id, container.hostUid);
        this.mappedViews.add(task.id);
      }
      if (task.network.allow.length > 0 && container.running) await this.openEgress(a, container.hostUid);
      const sandbox = await this.engine.adopt(
        container.containerId,
        { stdin: task.stdin, from: from?.position ?? null, workspaceDir: this.workspaces.dir(task.workspaceId), taskId: task.id },
        a.handlers(),
      );
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
  private async follow(a: TaskRun, started: Date, adopted: boolean): Promise<void> {
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
    // The task's idmapped view and host UID go after it is recorded done (run() and adopt(), before
    // the workspace is released): an unmount waits for the kernel's RCU grace period, 10–20 ms.
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
    // A failed task that left its workspace full filled its quota: reason disk_quota. The
    // workspace's counts are refreshed in any case, after the exit for any other task.
    // The workspace was used until now: a client that sees the task done sees that too.
    this.workspaces.touch(task.workspaceId);
    const refreshed = this.workspaces.afterTask(task.workspaceId).catch((err: unknown) => {
      this.log.warn({ taskId: task.id, err }, 'workspace usage could not be read');
      return { full: false };
    });
    const quota = status === 'failed' && reason === null && !task.workspaceReadonly && (await refreshed).full;
    // An adopted task's end is when the engine says its container stopped.
    const at = adopted && exit.finishedAt && exit.finishedAt.getTime() >= started.getTime() ? exit.finishedAt : undefined;
    this.finish(a, status, quota ? 'disk_quota' : reason, exit.exitCode, started, at);
    await refreshed;
  }

  /** Leaves the task's container running for the next start: log, mount and socket stay. */
  async detach(a: TaskRun): Promise<void> {
    if (a.detached) return;
    clearTimeout(a.timer);
    a.egress?.close({ keepDir: true });
    a.egress = null;
    a.markDetached();
    await a.sandbox?.detach();
  }

  /**
   * The relay that feeds a task's stdin from its pipe, or undefined when the image's relay lacks
   * the stdin mode: then stdin goes through the engine's attach and ends when the server or the
   * engine's service does (logged, so the operator knows to rebuild the image).
   */
  private async stdinRelay(a: TaskRun): Promise<string | undefined> {
    const relay = await imageStdinRelay(this.engine, a.task.image.name);
    if (relay !== null) return relay;
    this.log.warn(
      { taskId: a.task.id, image: a.task.image.name, label: LABEL_RELAY_STDIN },
      "the image's relay has no stdin mode: this task's stdin goes through the engine's attach and does not survive a restart of the server or of its Podman service (rebuild the image)",
    );
    return undefined;
  }

  /** Opens the task's proxy listener before its container exists (closed in finish()). */
  private async openEgress(a: TaskRun, hostUid: number | null): Promise<SandboxEgress> {
    if (!this.egress) throw new Error('this task manager has no egress proxy');
    if (this.engine.egressVia === 'proxy-url') {
      // The sandbox reaches the proxy's TCP listener with the task's own credentials.
      const egress = await this.egress.openTcp(a.task.id, a.task.network.allow);
      a.egress = egress;
      if (!egress.proxyUrl) throw new EngineError('the egress proxy gave no proxy URL (egress.tcp.listen and egress.tcp.advertiseUrl)');
      return { socketDir: '', relay: '', port: 0, proxyUrl: egress.proxyUrl };
    }
    const relay = await imageRelay(this.engine, a.task.image.name);
    if (relay === null) throw new EngineError(`image ${a.task.image.name} no longer has an egress relay (label ${LABEL_RELAY})`);
    const egress = await this.egress.open(a.task.id, a.task.network.allow, hostUid ?? undefined);
    a.egress = egress;
    return { socketDir: egress.socketDir, relay, port: this.config.egress.relayPort };
  }

  /** The one place a task reaches a terminal state: listener closed, recorded, forgotten. */
  finish(a: TaskRun, status: TaskStatus, reason: TaskRecord['reason'], exitCode: number | null, started?: Date, at?: Date): void {
    // Nothing the server opened for the task outlives it: its proxy socket and tunnels go first.
    a.egress?.close();
    a.egress = null;
    this.lifecycle.finish(a.task, a.log, status, reason, exitCode, started, at);
    this.forget(a.task.id);
  }

}
