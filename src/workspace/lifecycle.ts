import type { Logger } from 'pino';
import type { Workspaces } from './workspaces.js';

/**
 * The TTL sweep: every `sweepIntervalSeconds`, expired workspaces (unused for `ttlSeconds`, or
 * `ephemeralTtlSeconds` for those created for a single task; no task queued or running on them,
 * nothing reading them) are removed with their image and mount point. One sweep at a time; `idle()` waits for the one in progress.
 */
export class WorkspaceSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly workspaces: Workspaces,
    private readonly busy: (id: string) => boolean,
    private readonly settings: { sweepIntervalSeconds: number },
    private readonly log: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sweepNow(), this.settings.sweepIntervalSeconds * 1000);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Runs one sweep (after the one in progress); returns the ids removed. */
  sweepNow(): Promise<string[]> {
    const next = this.running.then(() => this.workspaces.sweep(this.busy));
    this.running = next.then(
      (removed) => {
        if (removed.length) this.log.info({ removed }, 'expired workspaces removed');
      },
      (err: unknown) => this.log.error({ err }, 'workspace sweep failed'),
    );
    return next;
  }

  idle(): Promise<void> {
    return this.running;
  }
}
