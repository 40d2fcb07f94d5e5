import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ContainerEngine, PooledSandbox, SandboxShape } from '../runtime/engine.js';
import type { WorkspaceRecord } from '../store/sqlite.js';
import type { SlotMounts } from './mounts.js';

/** What the pool needs of workspaces: the empty one each slot holds. */
export interface SpareWorkspaces {
  createSpare(): Promise<WorkspaceRecord>;
  discardSpare(id: string): Promise<void>;
  dir(id: string): string;
  /** The idmapped view of a held workspace for host UID `hostUid`; pair with `unmap`. */
  mapFor(id: string, hostUid: number): Promise<string>;
  unmap(id: string, hostUid: number): Promise<void>;
}

/** Host UID slots for members (per-task host UIDs): held under the member's slot id. */
export interface MemberUids {
  allocate(key: string): number;
  release(key: string): void;
  /** Slots free now. */
  readonly free: number;
}

export interface PoolShape extends SandboxShape {
  size: number;
}

export interface PoolSettings {
  shapes: PoolShape[];
  /** A member idle this long is replaced (its engine backstop counts from its start). */
  maxIdleSeconds: number;
  /** The backstop of a pre-started container: the longest task plus the engine's margin plus maxIdleSeconds. */
  backstopSeconds: number;
  /** Pause after a failed start before that shape is tried again. */
  retryMs: number;
}

/**
 * One pre-started sandbox, its slot, and the empty workspace already mounted on the slot (for a
 * task that brings none; a task with its own workspace has it mounted over the spare). With
 * per-task host UIDs the member has a host UID of its own (its container's user namespace), and
 * what its slot shows is that UID's idmapped view of the workspace.
 */
export interface Member {
  slot: string;
  key: string;
  sandbox: PooledSandbox;
  spare: WorkspaceRecord;
  hostUid: number | null;
}

/** The longest a member taken by a running task waits to be replaced. */
const REFILL_AFTER_MS = 1000;

export const shapeKey = (s: SandboxShape) => `${s.image}\u0000${s.cpus}\u0000${s.memoryMb}\u0000${s.pids}\u0000${s.isolation}`;

export const newSlotId = () => `slt_${randomBytes(9).toString('base64url')}`;

/**
 * Pre-started sandboxes, `size` per shape, refilled in the background one start at a time (so
 * that refills never crowd out the tasks themselves), after the task of a member taken has
 * exited or a member was dropped. `take` hands out a member at most once;
 * an empty shape means a cold start. Members idle past maxIdleSeconds, or found dead, are
 * replaced. Nothing here outlives `close()` but the slots handed out.
 */
export class WarmPool {
  private readonly idle = new Map<string, Member[]>();
  private readonly shapes = new Map<string, PoolShape>();
  private readonly backoffUntil = new Map<string, number>();
  private filling: Promise<void> | null = null;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  /** Starts and removals under way, awaited by close(). */
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly engine: ContainerEngine,
    private readonly mounts: SlotMounts,
    readonly spares: SpareWorkspaces,
    private readonly settings: PoolSettings,
    private readonly log: Logger,
    /**
     * Per-task host UIDs (null: members run as host UID 65532). A member is started only while
     * more than `uidsKept` slots are free, so that tasks starting cold always find one.
     */
    private readonly uids: MemberUids | null = null,
    private readonly uidsKept = 0,
  ) {
    for (const s of settings.shapes) if (s.size > 0) this.shapes.set(shapeKey(s), s);
  }

  get enabled(): boolean {
    return this.shapes.size > 0 && typeof this.engine.prestart === 'function';
  }

  /** Starts filling, and checks the members' age every few seconds. */
  start(): void {
    if (!this.enabled) return;
    this.refill();
    this.timer = setInterval(() => this.expire(), Math.max(1000, Math.min(30_000, (this.settings.maxIdleSeconds * 1000) / 4)));
    this.timer.unref();
  }

  /** True when the pool keeps members of this shape. */
  holds(shape: SandboxShape): boolean {
    return this.enabled && this.shapes.has(shapeKey(shape));
  }

  /** True when `take` would hand out a member of the shape now. */
  hasReady(shape: SandboxShape): boolean {
    return (this.idle.get(shapeKey(shape)) ?? []).some((m) => m.sandbox.alive && !this.tooOld(m));
  }

  /** A live member of the shape, taken out of the pool (never handed out again), or null. */
  take(shape: SandboxShape): Member | null {
    const key = shapeKey(shape);
    const list = this.idle.get(key);
    let member: Member | null = null;
    while (list && list.length > 0) {
      const m = list.shift()!;
      if (m.sandbox.alive && !this.tooOld(m)) {
        member = m;
        break;
      }
      this.drop(m);
    }
    // The refill waits for the task the member runs (`refill` once it has exited), so that a
    // container start does not compete with a short task for the CPU; a shape left empty refills
    // now, and a task still running after REFILL_AFTER_MS does not hold the refill any longer.
    if (this.shapes.has(key)) {
      if ((list?.length ?? 0) === 0) this.refill();
      else setTimeout(() => this.refill(), REFILL_AFTER_MS).unref();
    }
    return member;
  }

  /** Counts per shape: members ready now. */
  stats(): { ready: number; shapes: number } {
    let ready = 0;
    for (const l of this.idle.values()) ready += l.length;
    return { ready, shapes: this.shapes.size };
  }

  /** Resolves once every shape is full or its last start failed (tests and the benchmark). */
  async ready(timeoutMs = 30_000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until) {
      if ([...this.shapes].every(([k, s]) => (this.idle.get(k)?.length ?? 0) >= s.size)) return true;
      await new Promise((r) => setTimeout(r, 20));
    }
    return false;
  }

  /** Removes every idle member and its slot; a start under way is removed when it ends. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.filling;
    for (const list of this.idle.values()) for (const m of list.splice(0)) this.drop(m);
    await Promise.allSettled([...this.pending]);
  }

  tooOld(m: Member): boolean {
    return Date.now() - m.sandbox.startedAt > this.settings.maxIdleSeconds * 1000;
  }

  private expire(): void {
    for (const list of this.idle.values()) {
      for (let i = list.length - 1; i >= 0; i--) {
        const m = list[i]!;
        if (!m.sandbox.alive || this.tooOld(m)) {
          list.splice(i, 1);
          this.drop(m);
        }
      }
    }
    this.refill();
  }

  /**
   * Removes a member that never ran a task: container, slot, and its spare workspace (only the
   * pool's hold on it when a task claimed it).
   */
  drop(m: Member): void {
    this.background(async () => {
      await m.sandbox.discard().catch((err: unknown) => this.log.warn({ err, slot: m.slot }, 'pool member removal failed'));
      await this.mounts.clear(m.slot);
      await this.forgetSpare(m);
      this.uids?.release(m.slot);
      this.refill();
    });
  }

  /** The member's spare workspace: its idmapped view, then the pool's hold on it. */
  async forgetSpare(m: Member): Promise<void> {
    if (m.hostUid !== null) await this.spares.unmap(m.spare.id, m.hostUid);
    await this.spares.discardSpare(m.spare.id);
  }

  /** Work that close() waits for. */
  background(step: () => Promise<void>): void {
    const p = step()
      .catch((err: unknown) => this.log.warn({ err }, 'pool cleanup failed'))
      .finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  /** Starts members for every shape below its size, one at a time, unless a fill is under way. */
  refill(): void {
    if (this.closed || this.filling) return;
    this.filling = this.fill().finally(() => (this.filling = null));
  }

  private async fill(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      const next = [...this.shapes].find(([k, s]) => (this.idle.get(k)?.length ?? 0) < s.size && (this.backoffUntil.get(k) ?? 0) <= Date.now());
      if (!next) return;
      const [key, shape] = next;
      // No member while that would leave a cold task no host UID slot (checked again after a while).
      if (this.uids && this.uids.free <= this.uidsKept) {
        this.backoffUntil.set(key, Date.now() + this.settings.retryMs);
        setTimeout(() => this.refill(), this.settings.retryMs).unref();
        return;
      }
      const slot = newSlotId();
      let spare: WorkspaceRecord | null = null;
      let hostUid: number | null = null;
      let mapped = false;
      try {
        hostUid = this.uids ? this.uids.allocate(slot) : null;
        const { dir, egressDir, stdinDir } = await this.mounts.create(slot);
        spare = await this.spares.createSpare();
        let source = this.spares.dir(spare.id);
        if (hostUid !== null) {
          source = await this.spares.mapFor(spare.id, hostUid);
          mapped = true;
        }
        await this.mounts.attach(slot, source, false);
        const sandbox = await this.engine.prestart!(
          { image: shape.image, cpus: shape.cpus, memoryMb: shape.memoryMb, pids: shape.pids, isolation: 'runc' },
          { id: slot, dir, egressDir, stdinDir, backstopSeconds: this.settings.backstopSeconds, hostUid },
        );
        const member: Member = { slot, key, sandbox, spare, hostUid };
        if (this.closed) {
          this.drop(member);
          return;
        }
        this.idle.set(key, [...(this.idle.get(key) ?? []), member]);
      } catch (err) {
        await this.mounts.clear(slot).catch(() => undefined);
        if (mapped) await this.spares.unmap(spare!.id, hostUid!).catch(() => undefined);
        if (spare) await this.spares.discardSpare(spare.id).catch(() => undefined);
        this.uids?.release(slot);
        this.log.warn({ err: err instanceof Error ? err.message : String(err), image: shape.image }, 'pool member could not start; retrying later');
        this.backoffUntil.set(key, Date.now() + this.settings.retryMs);
        const timer = setTimeout(() => this.refill(), this.settings.retryMs);
        timer.unref();
      }
    }
  }
}
