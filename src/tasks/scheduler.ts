import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { AppError } from '../errors.js';
import { tenantLimits } from '../tenants/limits.js';
import { TaskQueue } from './queue.js';

interface Schedulable {
  id: string;
  workspaceId: string;
  tenant: string;
}

/**
 * The queue and its pump: admitted tasks wait here until a run slot is free and no other task
 * runs on their workspace, then `start` runs them. Every run is tracked until it settles, when
 * its slot goes to the next task.
 */
export class TaskScheduler<T extends Schedulable> {
  private readonly queue: TaskQueue<T>;
  private readonly runs = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    private readonly config: Pick<Config, 'queue' | 'tenants'>,
    private readonly start: (task: T) => Promise<void>,
    private readonly log: Logger,
  ) {
    this.queue = new TaskQueue(config.queue.concurrency, config.queue.maxQueued, (tenant) => tenantLimits(config, tenant));
  }

  /**
   * 429 with Retry-After when one more task of `tenant` has no room: TENANT_QUEUED_LIMIT when the
   * tenant has maxQueued tasks waiting and no run slot of its own (maxRunning) free, QUEUE_FULL
   * when neither a run slot nor a place in the whole queue is free.
   */
  requireRoom(tenant: string): void {
    const full = this.queue.roomFor(tenant);
    if (full === null) return;
    const headers = { 'retry-after': String(this.config.queue.retryAfterSeconds) };
    if (full === 'tenant') {
      const { maxQueued, maxRunning } = tenantLimits(this.config, tenant);
      throw new AppError('TENANT_QUEUED_LIMIT', { tenant, ...this.queue.tenantCounts(tenant), maxQueued, maxRunning }, undefined, headers);
    }
    throw new AppError('QUEUE_FULL', { queued: this.queue.queuedCount, limit: this.config.queue.maxQueued }, undefined, headers);
  }

  /** Queues a task (its room was checked) and starts what may start. */
  enqueue(task: T): void {
    this.queue.push(task);
    this.pump();
  }

  /** Queues a task without starting anything yet (start-up, before `pump`). */
  requeue(task: T): void {
    this.queue.push(task);
  }

  /** A task that is already running (adopted after a restart): holds its slot until `run` settles. */
  adoptRunning(task: T, run: Promise<void>): void {
    this.queue.adopt(task);
    this.track(task.id, run);
  }

  /** Takes a waiting task out of the queue; false when it is not waiting (it started). */
  withdraw(id: string): boolean {
    return this.queue.remove(id);
  }

  /** Starts the tasks that may start now. */
  pump(): void {
    if (this.stopped) return;
    for (const task of this.queue.takeRunnable()) this.track(task.id, this.start(task));
  }

  /**
   * No task starts from now on (queued tasks stay queued); resolves once every run settled or
   * `waitMs` passed, whichever is first.
   */
  async stop(waitMs: number): Promise<void> {
    this.stopped = true;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((r) => (timer = setTimeout(r, waitMs)));
    await Promise.race([Promise.allSettled([...this.runs]), deadline]);
    clearTimeout(timer);
  }

  stats() {
    return { queued: this.queue.queuedCount, running: this.queue.runningCount };
  }

  private track(id: string, run: Promise<void>): void {
    const p = run
      .catch((err: unknown) => this.log.error({ taskId: id, err }, 'task runner failed'))
      .finally(() => {
        this.runs.delete(p);
        this.queue.done(id);
        this.pump();
      });
    this.runs.add(p);
  }
}
