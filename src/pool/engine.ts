import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type {
  ContainerEngine,
  EngineVersions,
  LogPosition,
  OwnContainer,
  RunningSandbox,
  SandboxHandlers,
  SandboxJob,
  SandboxShape,
} from '../runtime/engine.js';
import type { SlotMounts } from './mounts.js';
import type { Member, WarmPool } from './pool.js';

/**
 * The engine the task manager sees when a pool exists: a task whose shape has a ready member
 * (and no egress allowlist: its socket directory is bound at creation) is handed to it, any
 * other starts cold. A handed-out container is recorded in `claims/<container id>` (the task
 * id) before the job is sent, so that a later start finds the task of a pre-started container
 * (whose labels name no task) and adopts it; its slot stays mounted until it has exited.
 */
export class PooledEngine implements ContainerEngine {
  private readonly slotOf = new Map<string, string>();
  /** Tasks handed to a pre-started sandbox so far. */
  handoffs = 0;

  constructor(
    private readonly inner: ContainerEngine,
    readonly pool: WarmPool,
    private readonly mounts: SlotMounts,
    private readonly claimsDir: string,
    private readonly log: Logger,
  ) {
    mkdirSync(claimsDir, { recursive: true, mode: 0o700 });
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

  async start(shape: SandboxShape, job: SandboxJob, handlers: SandboxHandlers): Promise<RunningSandbox> {
    const member = job.egress ? null : this.pool.take(shape);
    if (member) {
      const warm = await this.handoff(member, job, handlers).catch((err: unknown) => {
        this.log.warn({ taskId: job.taskId, err: err instanceof Error ? err.message : String(err) }, 'pool handoff failed; starting cold');
        this.pool.drop(member);
        return null;
      });
      if (warm) return warm;
    }
    return this.inner.start(shape, job, handlers);
  }

  private async handoff(m: Member, job: SandboxJob, handlers: SandboxHandlers): Promise<RunningSandbox> {
    const id = m.sandbox.containerId;
    writeFileSync(this.claim(id), job.taskId, { mode: 0o600 });
    try {
      await this.mounts.attach(m.slot, job.workspaceDir, job.workspaceReadonly);
      this.slotOf.set(id, m.slot);
      const running = this.afterExit(await m.sandbox.handoff(job, handlers), m.slot);
      this.handoffs += 1;
      return running;
    } catch (err) {
      this.slotOf.delete(id);
      rmSync(this.claim(id), { force: true });
      throw err;
    }
  }

  /** The slot's mounts and the claim go once the container has exited (not when left running). */
  private afterExit(running: RunningSandbox, slot: string): RunningSandbox {
    const id = running.containerId;
    const exit = running.exit.then(async (e) => {
      await this.mounts.clear(slot).catch((err: unknown) => this.log.warn({ err, slot }, 'slot unmount failed'));
      rmSync(this.claim(id), { force: true });
      this.slotOf.delete(id);
      return e;
    });
    return {
      containerId: id,
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

  async adopt(containerId: string, opts: { stdin: boolean; from: LogPosition | null }, handlers: SandboxHandlers): Promise<RunningSandbox | null> {
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

  private claim(containerId: string): string {
    return join(this.claimsDir, containerId.replace(/[^A-Za-z0-9]/g, ''));
  }
}
