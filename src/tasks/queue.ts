/** What a tenant may have in the queue: running at once, and waiting (see TaskQueue.roomFor). */
export interface TenantQueueLimits {
  maxRunning: number;
  maxQueued: number;
}

const UNLIMITED: TenantQueueLimits = { maxRunning: Number.MAX_SAFE_INTEGER, maxQueued: Number.MAX_SAFE_INTEGER };

/**
 * Admission with a concurrency limit, fair across tenants: tenants with a task that may start are
 * served round-robin (a tenant that just got a run slot goes to the back of the line), and each
 * tenant's tasks start in the order they came (FIFO). A tenant at its maxRunning waits without
 * blocking the others; a task whose workspace is busy waits without blocking the tasks behind it.
 */
export class TaskQueue<T extends { id: string; workspaceId: string; tenant: string }> {
  /** Waiting tasks per tenant, oldest first. */
  private readonly waiting = new Map<string, T[]>();
  /** Tenants with waiting tasks, in the order they are served next. */
  private readonly rotation: string[] = [];
  private waitingCount = 0;
  private readonly running = new Map<string, T>();
  private readonly runningByTenant = new Map<string, number>();
  private readonly busyWorkspaces = new Set<string>();

  constructor(
    private readonly concurrency: number,
    private readonly maxQueued: number,
    private readonly tenantLimits: (tenant: string) => TenantQueueLimits = () => UNLIMITED,
  ) {}

  get queuedCount(): number {
    return this.waitingCount;
  }

  get runningCount(): number {
    return this.running.size;
  }

  /** The tenant's waiting and running tasks. */
  tenantCounts(tenant: string): { queued: number; running: number } {
    return { queued: this.waiting.get(tenant)?.length ?? 0, running: this.runningByTenant.get(tenant) ?? 0 };
  }

  /** Room for one more: a free run slot, or space in the waiting line. */
  hasRoom(): boolean {
    return this.waitingCount < this.maxQueued || this.running.size + this.waitingCount < this.concurrency;
  }

  /**
   * Whether one more task of `tenant` may be admitted: null when it may, `tenant` when the tenant
   * has maxQueued tasks waiting and no free run slot of its own (maxRunning) for it, `queue` when
   * the same holds for the whole queue (queue.maxQueued, queue.concurrency).
   */
  roomFor(tenant: string): 'tenant' | 'queue' | null {
    const limits = this.tenantLimits(tenant);
    const { queued, running } = this.tenantCounts(tenant);
    if (queued >= limits.maxQueued && running + queued >= limits.maxRunning) return 'tenant';
    return this.hasRoom() ? null : 'queue';
  }

  push(item: T): void {
    const line = this.waiting.get(item.tenant);
    if (line) line.push(item);
    else {
      this.waiting.set(item.tenant, [item]);
      this.rotation.push(item.tenant);
    }
    this.waitingCount += 1;
  }

  /** Counts an item as running without it having waited (a task adopted after a restart). */
  adopt(item: T): void {
    this.markRunning(item);
  }

  /** Removes a waiting item; false when it is not waiting. */
  remove(id: string): boolean {
    for (const [tenant, line] of this.waiting) {
      const i = line.findIndex((t) => t.id === id);
      if (i < 0) continue;
      this.takeAt(tenant, line, i);
      return true;
    }
    return false;
  }

  /**
   * Next items allowed to start now, marked running: one per tenant in turn (round-robin), each
   * tenant's oldest task whose workspace is free, while run slots are free.
   */
  takeRunnable(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.rotation.length && this.running.size < this.concurrency; ) {
      const tenant = this.rotation[i]!;
      const line = this.waiting.get(tenant)!;
      const atLimit = (this.runningByTenant.get(tenant) ?? 0) >= this.tenantLimits(tenant).maxRunning;
      const k = atLimit ? -1 : line.findIndex((t) => !this.busyWorkspaces.has(t.workspaceId));
      if (k < 0) {
        i++; // this tenant cannot start anything now: it keeps its place for the next turn
        continue;
      }
      const t = line[k]!;
      this.takeAt(tenant, line, k);
      this.markRunning(t);
      out.push(t);
      // Served: to the back of the line (takeAt already dropped it when nothing of it is left).
      if (this.rotation[i] === tenant) {
        this.rotation.splice(i, 1);
        this.rotation.push(tenant);
      }
    }
    return out;
  }

  done(id: string): void {
    const t = this.running.get(id);
    if (!t) return;
    this.running.delete(id);
    this.busyWorkspaces.delete(t.workspaceId);
    const n = (this.runningByTenant.get(t.tenant) ?? 1) - 1;
    if (n > 0) this.runningByTenant.set(t.tenant, n);
    else this.runningByTenant.delete(t.tenant);
  }

  private markRunning(t: T): void {
    this.running.set(t.id, t);
    this.busyWorkspaces.add(t.workspaceId);
    this.runningByTenant.set(t.tenant, (this.runningByTenant.get(t.tenant) ?? 0) + 1);
  }

  /** Takes the waiting item at `i` of the tenant's line; a tenant left with none leaves the rotation. */
  private takeAt(tenant: string, line: T[], i: number): void {
    line.splice(i, 1);
    this.waitingCount -= 1;
    if (line.length > 0) return;
    this.waiting.delete(tenant);
    this.rotation.splice(this.rotation.indexOf(tenant), 1);
  }
}
