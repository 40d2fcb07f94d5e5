import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ObservedSources } from '../audit/recorder.js';
import { TERMINAL } from '../tasks/model.js';

/** The warm pool's figures: members ready now, and tasks handed over or started cold so far. */
export interface PoolFigures {
  ready: number;
  handoffs: number;
  coldStarts: number;
}

/**
 * The Prometheus metrics of one server (a registry of its own, so that several servers in one
 * process keep apart). Counters move with the lifecycle's transitions, the proxy's decisions and
 * the HTTP hooks; the gauges are read from their sources when scraped.
 */
export class Metrics {
  readonly registry = new Registry();
  private queueDepthOf: () => number = () => 0;
  private subscribersOf: () => number = () => 0;
  private poolOf: () => PoolFigures = () => ({ ready: 0, handoffs: 0, coldStarts: 0 });

  private readonly tasks = new Counter({
    name: 'sandboxshift_tasks_total',
    help: 'Task status transitions, by the status entered (queued: submitted)',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  private readonly startSeconds = new Histogram({
    name: 'sandboxshift_task_start_seconds',
    help: 'Seconds from a task being accepted to its start (queue wait included)',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800],
    registers: [this.registry],
  });
  private readonly durationSeconds = new Histogram({
    name: 'sandboxshift_task_duration_seconds',
    help: 'Seconds from a task starting to its end, for tasks that started',
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400],
    registers: [this.registry],
  });
  private readonly streamBytes = new Counter({
    name: 'sandboxshift_stream_bytes_total',
    help: "Bytes tasks wrote to stdout and stderr, counted when each task ends",
    labelNames: ['stream'] as const,
    registers: [this.registry],
  });
  private readonly egress = new Counter({
    name: 'sandboxshift_egress_decisions_total',
    help: 'Egress proxy decisions, allowed or denied',
    labelNames: ['allowed'] as const,
    registers: [this.registry],
  });
  private readonly engineErrors = new Counter({
    name: 'sandboxshift_engine_errors_total',
    help: 'Tasks ended by an engine error, and requests refused because the engine was unreachable',
    registers: [this.registry],
  });
  private readonly authFailures = new Counter({
    name: 'sandboxshift_auth_failures_total',
    help: 'Requests answered 401 UNAUTHENTICATED',
    registers: [this.registry],
  });

  constructor() {
    const self = this;
    new Gauge({
      name: 'sandboxshift_queue_depth',
      help: 'Tasks queued and not yet started',
      registers: [this.registry],
      collect() {
        this.set(self.queueDepthOf());
      },
    });
    new Gauge({
      name: 'sandboxshift_subscribers',
      help: 'Live output streams open (WebSockets and followed logs)',
      registers: [this.registry],
      collect() {
        this.set(self.subscribersOf());
      },
    });
    new Gauge({
      name: 'sandboxshift_pool_ready',
      help: 'Pre-started sandboxes ready to take a task',
      registers: [this.registry],
      collect() {
        this.set(self.poolOf().ready);
      },
    });
    // Counted by the pool itself: read when scraped.
    const poolCounter = (name: string, help: string, read: (f: PoolFigures) => number) =>
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.reset();
          this.inc(read(self.poolOf()));
        },
      });
    poolCounter('sandboxshift_pool_handoffs_total', 'Tasks handed to a pre-started sandbox', (f) => f.handoffs);
    poolCounter('sandboxshift_pool_cold_starts_total', 'Tasks of a shape the pool holds that started cold (no member was ready)', (f) => f.coldStarts);
    // Every label value a counter can take is present from the start (0 until it moves).
    for (const s of ['queued', 'running', ...TERMINAL]) this.tasks.labels(s).inc(0);
    for (const s of ['stdout', 'stderr']) this.streamBytes.labels(s).inc(0);
    for (const a of ['true', 'false']) this.egress.labels(a).inc(0);
  }

  attach(s: ObservedSources, queueDepth: () => number): void {
    this.queueDepthOf = queueDepth;
    s.lifecycle.on('transition', ({ task, to }) => {
      this.tasks.labels(to).inc();
      if (to === 'running' && task.startedAt) {
        this.startSeconds.observe(Math.max(0, Date.parse(task.startedAt) - Date.parse(task.createdAt)) / 1000);
      }
      if (!TERMINAL.has(to)) return;
      if (task.durationMs !== null) this.durationSeconds.observe(task.durationMs / 1000);
      this.streamBytes.labels('stdout').inc(task.output.stdoutBytes);
      this.streamBytes.labels('stderr').inc(task.output.stderrBytes);
      if (task.reason === 'engine_error') this.engineErrors.inc();
    });
    s.decisions.on('decision', (_id, d) => this.egress.labels(String(d.allowed)).inc());
  }

  /** Where the warm pool's figures are read from. */
  observePool(figures: () => PoolFigures): void {
    this.poolOf = figures;
  }

  /** Where the number of open streams is read from (the HTTP app's stream limiter). */
  observeSubscribers(count: () => number): void {
    this.subscribersOf = count;
  }

  authFailed(): void {
    this.authFailures.inc();
  }

  engineUnavailable(): void {
    this.engineErrors.inc();
  }

  contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }
}
