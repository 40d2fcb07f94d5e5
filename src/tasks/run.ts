import { closeSync, openSync, readFileSync, readSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TaskEgress } from '../egress/proxy.js';
import type { LogPosition, RunningSandbox, SandboxHandlers, StreamName } from '../runtime/engine.js';
import { StreamCapture } from '../streaming/capture.js';
import { secretMasks, type SecretMask } from '../streaming/mask.js';
import { streamFile, type TaskLog } from '../streaming/tasklog.js';
import { MAX_NOTES, NOTE_CHARS, type TaskRecord } from './model.js';

const STREAMS: readonly StreamName[] = ['stdout', 'stderr'];
const CHECKPOINT_FILE = 'engine.json';
const CHECKPOINT_EVERY_MS = 100;

/**
 * Where the task's output stands in the engine's log: a later run adopting the container reads
 * on from `position`, where `produced` bytes of each stream (as masked) had been delivered. It only
 * advances while every byte before it is on disk in the task log (both heads still open): bytes
 * past a head live in the in-memory tail, so they are read again from the engine after a crash.
 * Nor does it advance while a mask holds back bytes: from a position where nothing is held, the
 * masked output that follows is the same however the engine's log is read again.
 */
export interface Checkpoint {
  containerId: string;
  position: LogPosition | null;
  produced: Record<StreamName, number>;
}

export interface OutputBounds {
  headBytes: number;
  tailBytes: number;
  frameBytes: number;
}

/** One task's run state: its sandbox, deadline, stdin, output captures and egress listener. */
export class TaskRun {
  sandbox: RunningSandbox | null = null;
  stoppedBy: 'timeout' | 'cancel' | null = null;
  stdinPending: Buffer[] = [];
  stdinBytes = 0;
  stdinEof = false;
  /** Set while the container is being created: gives up on a start that hangs. */
  abortStart?: (() => void) | undefined;
  /** The task's egress proxy listener (tasks with an allowlist), closed when the task ends. */
  egress: TaskEgress | null = null;
  timer: NodeJS.Timeout | undefined;
  /** True when the server left the container running for its next start. */
  detached = false;
  private onDetach: (v: 'detached') => void = () => undefined;
  /** Resolves once the server leaves the container running (see markDetached). */
  readonly whenDetached = new Promise<'detached'>((r) => (this.onDetach = r));
  /** The engine's log lost output of this task (count unknown). */
  lost = false;
  private captures: Record<StreamName, StreamCapture> | null = null;
  /** Every stream passes its secret mask before anything counts or keeps it. */
  private readonly masks: Record<StreamName, SecretMask>;
  private readonly skip: Record<StreamName, number> = { stdout: 0, stderr: 0 };
  private readonly delivered: Record<StreamName, number> = { stdout: 0, stderr: 0 };
  private checkpointAt = 0;
  private frozen = false;
  private containerId = '';

  constructor(
    readonly task: TaskRecord,
    readonly log: TaskLog,
    private readonly bounds: OutputBounds,
    /** The task's secretEnv values, in memory only (kept encrypted by the manager). */
    readonly secretEnv: Readonly<Record<string, string>> = {},
  ) {
    this.masks = secretMasks(Object.values(secretEnv));
  }

  markDetached(): void {
    this.detached = true;
    this.onDetach('detached');
  }

  /** The task's deadline: `timeoutSeconds` after it started. */
  get deadline(): number {
    return Date.parse(this.task.startedAt ?? new Date().toISOString()) + this.task.timeoutSeconds * 1000;
  }

  /** The checkpoint an earlier run left, or null. */
  readCheckpoint(): Checkpoint | null {
    try {
      return JSON.parse(readFileSync(join(this.log.dir, CHECKPOINT_FILE), 'utf8')) as Checkpoint;
    } catch {
      return null;
    }
  }

  /**
   * Opens the output captures: fresh, or continuing from what the task log already holds when
   * the container is adopted from `from`.
   */
  openCaptures(from: Checkpoint | null, adopting: boolean): void {
    const { headBytes, tailBytes, frameBytes } = this.bounds;
    const make = (stream: StreamName) =>
      new StreamCapture(headBytes, tailBytes, frameBytes, {
        text: (data) => this.log.append({ type: stream, data }),
        bytes: (data) => this.log.appendBytes(stream, data),
      });
    this.captures = { stdout: make('stdout'), stderr: make('stderr') };
    if (!adopting) return;
    for (const stream of STREAMS) {
      const { kept, last } = keptBytes(join(this.log.dir, streamFile(stream)));
      this.captures[stream].resume(kept, last);
      this.delivered[stream] = from?.produced[stream] ?? 0;
      this.skip[stream] = Math.max(0, kept - this.delivered[stream]);
    }
    if (from) this.containerId = from.containerId;
  }

  /** Records the container so that a later run can adopt it. */
  recordContainer(containerId: string): void {
    this.containerId = containerId;
    this.writeCheckpoint({ containerId, position: null, produced: { stdout: 0, stderr: 0 } });
  }

  handlers(): SandboxHandlers {
    return {
      onOutput: (stream, data) => {
        // Output of a sandbox the runner already gave up on has nowhere to go.
        if (this.log.finished || !this.captures) return;
        this.deliver(stream, this.masks[stream].push(data));
      },
      onPosition: (at) => {
        if (this.frozen || !this.captures || this.log.finished) return;
        if (this.masks.stdout.heldBytes > 0 || this.masks.stderr.heldBytes > 0) return;
        if (this.captures.stdout.headDone || this.captures.stderr.headDone) {
          this.frozen = true;
          return;
        }
        const now = Date.now();
        if (now - this.checkpointAt < CHECKPOINT_EVERY_MS) return;
        this.checkpointAt = now;
        this.writeCheckpoint({ containerId: this.containerId, position: at, produced: { ...this.delivered } });
      },
      onLost: () => {
        this.lost = true;
        this.skip.stdout = 0;
        this.skip.stderr = 0;
      },
      onCombined: (data) => {
        // Merged stdout and stderr: kept on stdout, and the task's notes say so (onNote).
        if (this.log.finished || !this.captures) return;
        this.deliver('stdout', this.masks.stdout.push(data));
      },
      onNote: (note) => this.note(note),
    };
  }

  /** Adds an engine note to the task record (bounded, each note once). */
  note(note: string): void {
    const notes = (this.task.notes ??= []);
    const text = note.slice(0, NOTE_CHARS);
    if (notes.length < MAX_NOTES && !notes.includes(text)) notes.push(text);
  }

  /** Masked output into the capture, past what an earlier run already kept. */
  private deliver(stream: StreamName, data: Buffer): void {
    this.delivered[stream] += data.length;
    let rest = data;
    if (this.skip[stream] > 0) {
      const n = Math.min(this.skip[stream], rest.length);
      this.skip[stream] -= n;
      rest = rest.subarray(n);
    }
    if (rest.length) this.captures?.[stream].push(rest);
  }

  /** At exit: the tails (after their gap frames) go into the log; returns the output summary. */
  finishOutput(): TaskRecord['output'] {
    const frameBytes = this.bounds.frameBytes;
    let truncated = this.lost;
    // What the masks held back (a beginning of a value that never completed) is decided now.
    if (this.captures) for (const stream of STREAMS) this.deliver(stream, this.masks[stream].finish());
    for (const stream of STREAMS) {
      if (this.lost) this.log.append({ type: 'gap', stream, droppedBytes: 0, countUnknown: true });
      const capture = this.captures?.[stream];
      if (!capture) continue;
      const { tail, dropped } = capture.finish();
      if (dropped > 0) {
        truncated = true;
        this.log.append({ type: 'gap', stream, droppedBytes: dropped });
      }
      if (tail.length) {
        this.log.appendBytes(stream, tail);
        for (const text of StreamCapture.frames(tail, frameBytes)) this.log.append({ type: stream, data: text });
      }
    }
    return {
      stdoutBytes: this.captures?.stdout.produced ?? 0,
      stderrBytes: this.captures?.stderr.produced ?? 0,
      truncated,
    };
  }

  private writeCheckpoint(c: Checkpoint): void {
    const path = join(this.log.dir, CHECKPOINT_FILE);
    try {
      writeFileSync(`${path}.tmp`, JSON.stringify(c));
      renameSync(`${path}.tmp`, path);
    } catch {
      // the log directory is gone (the task was pruned): nothing left to resume
    }
  }
}

/** How many bytes of a stream the task log holds, and its last few bytes. */
function keptBytes(path: string): { kept: number; last: Buffer } {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return { kept: 0, last: Buffer.alloc(0) };
  }
  const n = Math.min(4, size);
  const last = Buffer.alloc(n);
  if (n > 0) {
    const fd = openSync(path, 'r');
    try {
      readSync(fd, last, 0, n, size - n);
    } finally {
      closeSync(fd);
    }
  }
  return { kept: size, last };
}
