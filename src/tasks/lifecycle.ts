import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { TaskLog } from '../streaming/tasklog.js';
import type { TaskRecord, TaskStatus } from './model.js';
import type { TaskStore } from './ports.js';

export interface Clock {
  now(): Date;
}

/** Emitted on every status transition, after the store and the task's log have it. */
export interface TaskTransition {
  task: Readonly<TaskRecord>;
  from: TaskStatus | null;
  to: TaskStatus;
}

/**
 * The only writer of task status. Every transition updates the store, appends the frame to the
 * task's log and emits `transition` (for metrics and audit), in that order.
 */
export class TaskLifecycle extends EventEmitter<{ transition: [TaskTransition] }> {
  constructor(
    private readonly store: TaskStore,
    private readonly log: Logger,
    readonly clock: Clock = { now: () => new Date() },
  ) {
    super();
  }

  queued(task: TaskRecord, log: TaskLog): void {
    task.status = 'queued';
    this.store.insertTask(task);
    log.append({ type: 'status', status: 'queued' });
    this.emit('transition', { task, from: null, to: 'queued' });
  }

  running(task: TaskRecord, log: TaskLog): Date {
    const started = this.clock.now();
    const from = task.status;
    task.status = 'running';
    task.startedAt = started.toISOString();
    this.store.updateTask(task);
    log.append({ type: 'status', status: 'running' });
    this.emit('transition', { task, from, to: 'running' });
    return started;
  }

  /** A terminal state: record, exit frame, event. */
  finish(task: TaskRecord, log: TaskLog, status: TaskStatus, reason: TaskRecord['reason'], exitCode: number | null, started?: Date, at?: Date): void {
    const from = task.status;
    // `at`: when the engine says the container stopped (a task that ended while no server ran).
    const now = at ?? this.clock.now();
    task.status = status;
    task.reason = reason;
    task.exitCode = exitCode;
    task.finishedAt = now.toISOString();
    task.durationMs = started ? now.getTime() - started.getTime() : null;
    this.store.updateTask(task);
    if (!log.finished) log.append({ type: 'exit', status, exitCode, reason, durationMs: task.durationMs });
    this.log.info({ taskId: task.id, status, reason, exitCode, durationMs: task.durationMs }, 'task finished');
    this.emit('transition', { task, from, to: status });
  }
}
