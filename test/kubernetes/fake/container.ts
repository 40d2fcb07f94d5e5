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
  /** Host PID of the container's main process (PID 1 of its PID namespace), once it started. */
  mainPid: number | undefined;
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
    const sinks = this.sinks;
    let resolveClosed!: () => void;
    this.closed = new Promise((r) => (resolveClosed = r));
    let rejectStarted!: (err: Error) => void;
    const close = (): void => {
      if (this.isClosed) return;
      this.isClosed = true;
      // every stdio pipe (fd 3 too) is drained by now: no start signal means the launcher failed
      if (!isStarted && !this.spawnError) {
        this.spawnError = new Error(setupErr.trim().slice(-4096) || 'the container did not start');
        rejectStarted(this.spawnError);
      }
      for (const s of [...this.sinks]) s.exit();
      this.sinks.clear();
      resolveClosed();
    };
    // Until the launcher signals on fd 3, stderr is the launcher's own: kept for the start error.
    let setupErr = '';
    let isStarted = false;
    this.started = new Promise((resolve, reject) => {
      rejectStarted = reject;
      const signal = child.stdio[3] as NodeJS.ReadableStream | null;
      signal?.once('data', (data: Buffer) => {
        isStarted = true;
        const pid = Number(/^started (\d+)/.exec(data.toString('latin1'))?.[1]);
        if (pid > 0) this.mainPid = pid;
        resolve();
        // stderr the command wrote before the signal was read is the command's own
        if (setupErr) relay('stderr')(Buffer.from(setupErr, 'latin1'));
        setupErr = '';
      });
      child.once('error', (err) => {
        this.spawnError = err;
        this.exited = true;
        reject(err);
        close();
      });
    });
    this.started.catch(() => undefined);
    function relay(this: void, stream: StreamName) {
      return (chunk: Buffer): void => {
        if (!isStarted && stream === 'stderr') {
          setupErr += chunk.toString('latin1');
          return;
        }
        onOutput(stream, chunk);
        for (const s of [...sinks]) s.output(stream, chunk);
      };
    }
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

  /** The process group of every process of the container (the spawned unshare's). */
  get processGroup(): number | undefined {
    return this.child.pid;
  }

  /**
   * Signals the container's main process only, as a runtime's stop does first. It is PID 1 of
   * its namespace: as on a node, a signal it has no handler for (but SIGKILL) does nothing.
   */
  signalMain(signal: NodeJS.Signals): void {
    const pid = this.mainPid ?? this.child.pid;
    if (this.exited || pid === undefined) return;
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
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
