/**
 * FIFO admission with a concurrency limit, where a task whose workspace is busy waits without
 * blocking the tasks behind it.
 */
export class TaskQueue<T extends { id: string; workspaceId: string }> {
  private readonly waiting: T[] = [];
  private readonly running = new Map<string, T>();
  private readonly busyWorkspaces = new Set<string>();

  constructor(
    private readonly concurrency: number,
    private readonly maxQueued: number,
  ) {}

  get queuedCount(): number {
    return this.waiting.length;
  }

  get runningCount(): number {
    return this.running.size;
  }

  /** Room for one more: a free run slot, or space in the waiting line. */
  hasRoom(): boolean {
    return this.waiting.length < this.maxQueued || this.running.size + this.waiting.length < this.concurrency;
  }

  push(item: T): void {
    this.waiting.push(item);
  }

  /** Removes a waiting item; false when it is not waiting. */
  remove(id: string): boolean {
    const i = this.waiting.findIndex((t) => t.id === id);
    if (i < 0) return false;
    this.waiting.splice(i, 1);
    return true;
  }

  /** Next items allowed to start now, marked running. */
  takeRunnable(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.waiting.length && this.running.size < this.concurrency; ) {
      const t = this.waiting[i]!;
      if (this.busyWorkspaces.has(t.workspaceId)) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      this.running.set(t.id, t);
      this.busyWorkspaces.add(t.workspaceId);
      out.push(t);
    }
    return out;
  }

  done(id: string): void {
    const t = this.running.get(id);
    if (!t) return;
    this.running.delete(id);
    this.busyWorkspaces.delete(t.workspaceId);
  }
}
