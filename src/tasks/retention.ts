import { lstat, opendir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { TERMINAL, type TaskRecord, type TaskStatus } from './model.js';

/** What the retention sweep needs of the store (SqliteTaskStore implements it). */
export interface RetentionStore {
  /** Ids of tasks in one of `statuses` that finished before `before` (an ISO time), oldest first. */
  finishedBefore(statuses: TaskStatus[], before: string, limit: number): string[];
  /** Removes task records with their egress decisions. */
  deleteTasks(ids: string[]): void;
  getTask(id: string): TaskRecord | null;
}

export interface RetentionSettings {
  taskDays: number;
  sweepIntervalSeconds: number;
}

const DAY_MS = 86_400_000;
/** Records removed per store transaction; the sweep yields to the event loop between batches. */
const BATCH = 500;
const FINISHED: TaskStatus[] = [...TERMINAL];

/**
 * The retention sweep: at start and then every `sweepIntervalSeconds`, each task that finished
 * more than `taskDays` ago loses its record, its egress decisions and its log directory
 * (`<logsDir>/<id>`). Queued and running tasks are never removed. Records go first, so that a
 * request for the task answers 404 and nothing reopens its log; log directories older than the
 * cutoff that have no record (a crash between the two steps) are removed as well.
 * One sweep at a time; `idle()` waits for the one in progress.
 */
export class RetentionSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly store: RetentionStore,
    private readonly logsDir: string,
    private readonly settings: RetentionSettings,
    private readonly log: Logger,
    private readonly clock: { now(): Date } = { now: () => new Date() },
  ) {}

  start(): void {
    this.stopped = false;
    void this.sweepNow();
    this.timer = setInterval(() => void this.sweepNow(), this.settings.sweepIntervalSeconds * 1000);
    this.timer.unref();
  }

  /** No further sweeps; one in progress ends after its current batch. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Runs one sweep (after the one in progress); returns the ids of the tasks removed. */
  sweepNow(): Promise<string[]> {
    const next = this.running.then(() => this.sweep());
    this.running = next.then(
      (removed) => {
        if (removed.length) this.log.info({ removed: removed.length }, `finished tasks older than ${this.settings.taskDays} days removed`);
      },
      (err: unknown) => this.log.error({ err }, 'retention sweep failed'),
    );
    return next;
  }

  idle(): Promise<void> {
    return this.running;
  }

  private async sweep(): Promise<string[]> {
    const cutoff = new Date(this.clock.now().getTime() - this.settings.taskDays * DAY_MS);
    const removed: string[] = [];
    while (!this.stopped) {
      const ids = this.store.finishedBefore(FINISHED, cutoff.toISOString(), BATCH);
      if (ids.length === 0) break;
      this.store.deleteTasks(ids);
      for (const id of ids) await rm(join(this.logsDir, id), { recursive: true, force: true });
      removed.push(...ids);
      if (ids.length < BATCH) break;
    }
    if (!this.stopped) await this.removeStrayLogs(cutoff);
    return removed;
  }

  /** Log directories older than the cutoff whose task has no record. */
  private async removeStrayLogs(cutoff: Date): Promise<void> {
    let dir;
    try {
      dir = await opendir(this.logsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for await (const entry of dir) {
      if (this.stopped) break;
      const path = join(this.logsDir, entry.name);
      const st = await lstat(path).catch(() => null);
      if (!st || st.mtimeMs >= cutoff.getTime() || this.store.getTask(entry.name)) continue;
      await rm(path, { recursive: true, force: true });
    }
  }
}
