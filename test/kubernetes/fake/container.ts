// A running container's process and its streams: output fanned out to the log and to the
// attach sessions open at that moment (never replayed), stdin shared by the attach sessions and
// closed, with stdinOnce, when the first session that attached stdin closes it or goes away.
import type { ChildProcess } from 'node:child_process';
import type { StreamName } from './podlog.js';

export interface OutputSink {
  output(stream: StreamName, chunk: Buffer): void;
  /** The container's streams have closed: the session sends its status and ends. */
  exit(): void;
}

const REMNANT_GRACE_MS = 2000;

export class ContainerRun {
  exited = false;
  exitCode: number | null = null;
  signal: string | null = null;
  spawnError: Error | undefined;
  readonly started: Promise<void>;
  readonly closed: Promise<void>;
  private readonly sinks = new Set<OutputSink>();
  private stdinOwner: OutputSink | undefined;
  private stdinOpen: boolean;
  private isClosed = false;

  constructor(
    private readonly child: ChildProcess,
    readonly stdinEnabled: boolean,
    readonly stdinOnce: boolean,
    onOutput: (stream: StreamName, chunk: Buffer) => void,
  ) {
    this.stdinOpen = stdinEnabled;
    let resolveClosed!: () => void;
    this.closed = new Promise((r) => (resolveClosed = r));
    const close = (): void => {
      if (this.isClosed) return;
      this.isClosed = true;
      for (const s of [...this.sinks]) s.exit();
      this.sinks.clear();
      resolveClosed();
    };
    this.started = new Promise((resolve, reject) => {
      child.once('spawn', () => resolve());
      child.once('error', (err) => {
        this.spawnError = err;
        this.exited = true;
        reject(err);
        close();
      });
    });
    this.started.catch(() => undefined);
    const relay = (stream: StreamName) => (chunk: Buffer) => {
      onOutput(stream, chunk);
      for (const s of [...this.sinks]) s.output(stream, chunk);
    };
    child.stdout!.on('data', relay('stdout'));
    child.stderr!.on('data', relay('stderr'));
    child.stdin?.on('error', () => undefined);
    child.once('exit', (code, signal) => {
      this.exited = true;
      this.exitCode = code;
      this.signal = signal;
      // The container ends with its main process: whatever it left in its group goes too.
      this.kill('SIGKILL');
      const t = setTimeout(() => {
        child.stdout!.destroy();
        child.stderr!.destroy();
        close();
      }, REMNANT_GRACE_MS);
      t.unref();
    });
    child.once('close', close);
  }

  /** Signals the container's whole process group. */
  kill(signal: NodeJS.Signals): void {
    if (this.isClosed || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal);
    } catch {
      // the group is gone
    }
  }

  /** Adds a session; returns false when the container's streams have already closed. */
  attach(sink: OutputSink, withStdin: boolean): boolean {
    if (this.isClosed) return false;
    this.sinks.add(sink);
    if (withStdin && this.stdinOwner === undefined && this.stdinOpen) this.stdinOwner = sink;
    return true;
  }

  detach(sink: OutputSink): void {
    this.sinks.delete(sink);
    if (sink === this.stdinOwner) this.closeStdin(sink);
  }

  writeStdin(data: Buffer): void {
    if (!this.stdinOpen || !this.child.stdin || this.child.stdin.destroyed) return;
    this.child.stdin.write(data);
  }

  /** A session ended its stdin: with stdinOnce the container's stdin closes for good. */
  closeStdin(sink: OutputSink): void {
    if (sink !== this.stdinOwner || !this.stdinOnce || !this.stdinOpen) return;
    this.stdinOpen = false;
    this.child.stdin?.end();
  }
}
