import { chownSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { EGRESS_SOCKET_NAME } from '../runtime/spec.js';
import type {
  AdoptOptions,
  ContainerEngine,
  EngineVersions,
  OwnContainer,
  RunningSandbox,
  SandboxHandlers,
  SandboxJob,
  SandboxShape,
} from '../runtime/engine.js';
import type { SlotMounts } from './mounts.js';
import { shapeKey, type Member, type WarmPool } from './pool.js';

/** What the pooled engine needs of workspaces. */
export interface PoolWorkspaces {
  claimSpare(spare: Member['spare'], markers: string[], tenant: string): { id: string };
  hold(id: string): Promise<string>;
  release(id: string): Promise<void>;
  dir(id: string): string;
  mapFor(id: string, hostUid: number): Promise<string>;
  unmap(id: string, hostUid: number): Promise<void>;
}

/** The workspace a job's directory shows (its own mount, or a view of it). */
const workspaceIdOf = (job: SandboxJob) => job.workspaceId ?? job.workspaceDir.split('/').pop()!;

/** The task's side of a member's host UID slot (per-task host UIDs). */
export interface HandedUids {
  /** The task takes over the slot the member held under its slot id; the task's own is freed. */
  handOver(from: string, to: string): number | null;
}

/**
 * The engine the task manager sees when a pool exists. A task that brings no workspace may take
 * a member at submission (`reserve`): the member's empty workspace becomes the task's, already
 * mounted on the slot. At start, a task whose shape matches (and that has no stdin pipe: it is
 * bound at creation; secrets come with the job line) is handed to its reserved member, or to any ready member with its
 * workspace mounted over the member's spare; any other starts cold. A task with an allowlist has
 * its egress socket directory mounted onto the slot's egress directory first (with per-task host
 * UIDs, its socket and directory are given to the member's UID, which the task takes over).
 *
 * With per-task host UIDs each member was created with a host UID of its own: the task takes over
 * the member's UID slot (its own, allocated for a cold start, is freed; the running sandbox
 * reports the UID), and what is mounted on the slot is the idmapped view of the workspace for
 * that UID. The task's runner unmounts the view of its workspace after the exit, as for a cold
 * task; the pool unmounts the view of the spare under it.
 *
 * A handed-out container is recorded in `claims/<container id>` (the task id) before the job is
 * sent, so that a later start finds the task of a pre-started container (whose labels name no
 * task) and adopts it. The slot stays mounted until the container has exited; the pool holds the
 * task's workspace until then, so that it is never unmounted while the slot shows it.
 */
export class PooledEngine implements ContainerEngine {
  private readonly slotOf = new Map<string, string>();
  /** Members taken at submission, by the workspace directory of the task that took them. */
  private readonly reserved = new Map<string, { member: Member; at: number }>();
  private timer: NodeJS.Timeout | undefined;
  /** Tasks handed to a pre-started sandbox so far. */
  handoffs = 0;
  /** Tasks of a pooled shape (and no stdin pipe) that started cold: the pool had no member ready. */
  missed = 0;

  constructor(
    private readonly inner: ContainerEngine,
    readonly pool: WarmPool,
    private readonly mounts: SlotMounts,
    private readonly workspaces: PoolWorkspaces,
    private readonly claimsDir: string,
    private readonly maxReservedMs: number,
    private readonly log: Logger,
    /** Per-task host UIDs (null: none, members and tasks run as host UID 65532). */
    private readonly uids: HandedUids | null = null,
  ) {
    mkdirSync(claimsDir, { recursive: true, mode: 0o700 });
  }

  get egressVia(): ContainerEngine['egressVia'] {
    return this.inner.egressVia;
  }

  egressRefusal(): string | null {
    return this.inner.egressRefusal?.() ?? null;
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  imagePresent(image: string): Promise<boolean> {
    return this.inner.imagePresent(image);
  }

  imageLabels(image: string): Promise<Record<string, string> | null> {
    return this.inner.imageLabels(image);
  }

  versions(): Promise<EngineVersions> {
    return this.inner.versions();
  }

  async whenRemoved(containerId: string): Promise<void> {
    await this.inner.whenRemoved?.(containerId);
  }

  /** Starts the pool and the check that gives back members reserved by tasks that never ran. */
  startPool(): void {
    this.pool.start();
    if (!this.pool.enabled) return;
    this.timer = setInterval(() => {
      for (const [dir, r] of this.reserved) {
        if (Date.now() - r.at < this.maxReservedMs) continue;
        this.reserved.delete(dir);
        this.pool.drop(r.member);
      }
    }, 5000);
    this.timer.unref();
  }

  /** True when a live member of the shape is ready to be taken. */
  ready(shape: SandboxShape): boolean {
    return this.pool.hasReady(shape);
  }

  /**
   * For a task that brings no workspace: a ready member of its shape, whose empty workspace is
   * recorded as the task's own. Returns that workspace's id, or null (the task creates one).
   */
  reserve(shape: SandboxShape, markers: string[], tenant: string): string | null {
    const member = this.pool.take(shape);
    if (!member) return null;
    let id: string;
    try {
      ({ id } = this.workspaces.claimSpare(member.spare, markers, tenant));
    } catch (err) {
      this.pool.drop(member); // refused for the tenant: the cold path would refuse it too
      throw err;
    }
    this.reserved.set(this.workspaces.dir(id), { member, at: Date.now() });
    return id;
  }

  async start(shape: SandboxShape, job: SandboxJob, handlers: SandboxHandlers): Promise<RunningSandbox> {
    const dir = this.workspaces.dir(workspaceIdOf(job));
    const r = this.reserved.get(dir);
    this.reserved.delete(dir);
    let member: Member | null = null;
    let attach = true;
    // Secrets come with the job line, a stdin pipe is mounted onto the slot; a task runs with a
    // user namespace of its own exactly when the members have one.
    const ownUid = (job.hostUid ?? null) !== null;
    const cold = ownUid !== (this.uids !== null);
    if (r && !cold && r.member.key === shapeKey(shape) && r.member.sandbox.alive && !this.pool.tooOld(r.member)) {
      member = r.member;
      attach = false;
    } else {
      if (r) this.pool.drop(r.member); // the task's workspace stays: only the pool's hold goes
      if (!cold) member = this.pool.take(shape);
    }
    if (member) {
      const warm = await this.handoff(member, job, handlers, attach).catch((err: unknown) => {
        this.log.warn({ taskId: job.taskId, err: err instanceof Error ? err.message : String(err) }, 'pool handoff failed; starting cold');
        this.pool.drop(member!);
        return null;
      });
      if (warm) return warm;
    }
    if (!cold && this.pool.holds(shape)) this.missed += 1;
    return this.inner.start(shape, job, handlers);
  }

  private async handoff(m: Member, job: SandboxJob, handlers: SandboxHandlers, attach: boolean): Promise<RunningSandbox> {
    const id = m.sandbox.containerId;
    const workspaceId = attach ? workspaceIdOf(job) : m.spare.id;
    writeFileSync(this.claim(id), job.taskId, { mode: 0o600 });
    let held = false;
    let mapped = false;
    let pipeDir: string | null = null;
    try {
      if (attach) {
        await this.workspaces.hold(workspaceId);
        held = true;
        // The member's UID's view of the task's workspace (the job's names the task's own UID).
        let source = job.workspaceDir;
        if (m.hostUid !== null) {
          source = await this.workspaces.mapFor(workspaceId, m.hostUid);
          mapped = true;
        }
        await this.mounts.attach(m.slot, source, job.workspaceReadonly);
      }
      if (job.egress) {
        // The socket belongs to the UID the task runs as: the member's, once it takes it over.
        if (m.hostUid !== null) {
          chownSync(job.egress.socketDir, m.hostUid, m.hostUid);
          chownSync(join(job.egress.socketDir, EGRESS_SOCKET_NAME), m.hostUid, m.hostUid);
        }
        await this.mounts.attachEgress(m.slot, job.egress.socketDir);
      }
      // The pipe is made as the member's user, which the task's is from now on.
      pipeDir = m.sandbox.stdinPipe(job);
      if (pipeDir) await this.mounts.attachStdin(m.slot, pipeDir);
      this.slotOf.set(id, m.slot);
      const running = await m.sandbox.handoff(job, handlers);
      this.handoffs += 1;
      if (m.hostUid !== null) this.uids?.handOver(m.slot, job.taskId);
      return this.afterExit(
        running,
        m.slot,
        async () => {
          // The pool's holds: the task's workspace (attached) and the spare under it (and its
          // view), or the spare that became the task's workspace (its view is the task's).
          if (held) await this.workspaces.release(workspaceId);
          if (attach) await this.pool.forgetSpare(m);
          else await this.pool.spares.discardSpare(m.spare.id);
          this.pool.refill();
        },
        m.hostUid ?? undefined,
      );
    } catch (err) {
      this.slotOf.delete(id);
      rmSync(this.claim(id), { force: true });
      if (held) {
        await this.mounts
          .clear(m.slot)
          .then(() => (mapped ? this.workspaces.unmap(workspaceId, m.hostUid!) : undefined))
          .then(() => this.workspaces.release(workspaceId))
          .catch(() => undefined);
      }
      if (!held && (job.egress || pipeDir)) await this.mounts.clear(m.slot).catch(() => undefined);
      // A cold start makes the task's pipe afresh.
      if (pipeDir) rmSync(pipeDir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Once the container has exited (not when it is left running): the exit is passed on at once,
   * then the slot is unmounted, the claim removed and `after` run, in the background.
   */
  private afterExit(running: RunningSandbox, slot: string, after: () => Promise<void> = async () => undefined, hostUid?: number): RunningSandbox {
    const id = running.containerId;
    const exit = running.exit.then((e) => {
      this.pool.background(async () => {
        await this.mounts.clear(slot).catch((err: unknown) => this.log.warn({ err, slot }, 'slot unmount failed'));
        // The claim names the task of the container for as long as the container exists.
        await this.inner.whenRemoved?.(id);
        rmSync(this.claim(id), { force: true });
        this.slotOf.delete(id);
        await after();
      });
      return e;
    });
    return {
      containerId: id,
      ...(hostUid !== undefined ? { hostUid } : {}),
      exit,
      writeStdin: (d) => running.writeStdin(d),
      endStdin: () => running.endStdin(),
      stop: (g) => running.stop(g),
      detach: () => running.detach(),
    };
  }

  /** Our containers; a pre-started one is reported with the task recorded in its claim. */
  async listOurs(): Promise<OwnContainer[]> {
    const list = await this.inner.listOurs();
    return list.map((c) => {
      if (!c.slot) return c;
      this.slotOf.set(c.containerId, c.slot);
      let taskId = '';
      try {
        taskId = readFileSync(this.claim(c.containerId), 'utf8').trim();
      } catch {
        // never handed a job: an idle member of an earlier run
      }
      return { ...c, taskId };
    });
  }

  async adopt(containerId: string, opts: AdoptOptions, handlers: SandboxHandlers): Promise<RunningSandbox | null> {
    const running = await this.inner.adopt(containerId, opts, handlers);
    const slot = this.slotOf.get(containerId);
    return running && slot ? this.afterExit(running, slot) : running;
  }

  async remove(containerId: string): Promise<void> {
    await this.inner.remove(containerId);
    const slot = this.slotOf.get(containerId);
    if (slot) {
      this.slotOf.delete(containerId);
      await this.mounts.clear(slot).catch(() => undefined);
    }
    rmSync(this.claim(containerId), { force: true });
  }

  /** Start-up, after orphans were removed: claims of containers that are gone are deleted. */
  forgetClaims(keep: ReadonlySet<string>): void {
    for (const name of readdirSync(this.claimsDir)) if (!keep.has(name)) rmSync(join(this.claimsDir, name), { force: true });
  }

  /** Slots handed out whose container has not exited (tasks left running keep theirs). */
  heldSlots(): Set<string> {
    return new Set(this.slotOf.values());
  }

  /** Slots of containers found at start-up that still exist (adopted tasks). */
  slotsOf(containerIds: Iterable<string>): Set<string> {
    const out = new Set<string>();
    for (const id of containerIds) {
      const s = this.slotOf.get(id);
      if (s) out.add(s);
    }
    return out;
  }

  /** Stops the reservation check and gives back every reserved member (shutdown). */
  async close(): Promise<void> {
    clearInterval(this.timer);
    for (const r of this.reserved.values()) this.pool.drop(r.member);
    this.reserved.clear();
    await this.pool.close();
  }

  private claim(containerId: string): string {
    return join(this.claimsDir, containerId.replace(/[^A-Za-z0-9]/g, ''));
  }
}
