import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, constants, lstatSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A task's stdin through a named pipe instead of the engine's attach connection, so that it
 * outlives the server and the engine's API service: the pipe's far end is held by the image's
 * relay (`sbx-relay --stdin`, images/relay/sbx-relay.c) inside the container, which turns
 * length-prefixed frames into the command's stdin and keeps the pipe open read-write, so that a
 * server going away is not EOF. A new server opens the pipe again and goes on writing.
 *
 * The pipe lives in a per-task host directory mounted as a whole (a pipe the server made again
 * would be a new inode, which a mount of the old file would not show). The mount is read-only
 * under runc (opening a FIFO for writing needs no write access to its file system); gVisor
 * refuses that (EROFS), so there it is read-write, in a directory only the server may write.
 */
export const STDIN_DIR = '/run/sandboxshift/stdin';
export const STDIN_FIFO_NAME = 'stdin.fifo';
export const STDIN_FIFO = `${STDIN_DIR}/${STDIN_FIFO_NAME}`;

/** Largest payload of one frame: with its 2-byte header a frame is PIPE_BUF (4096) bytes, so each write of one is atomic. */
export const STDIN_FRAME_MAX = 4094;
/** How long a server leaving a task running waits for its queued stdin to reach the pipe. */
export const STDIN_FLUSH_MS = 2000;
/** A full pipe is tried again after 1 ms, then twice as long each time it is still full, up to this. */
const RETRY_MAX_MS = 50;

const EOF_FRAME = Buffer.from([0, 0]);

/** `data` as frames of at most STDIN_FRAME_MAX bytes each (none for an empty buffer). */
export function frames(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.length; at += STDIN_FRAME_MAX) {
    const part = data.subarray(at, at + STDIN_FRAME_MAX);
    const frame = Buffer.allocUnsafe(2 + part.length);
    frame.writeUInt16BE(part.length, 0);
    part.copy(frame, 2);
    out.push(frame);
  }
  return out;
}

/** The host side: `<root>/<taskId>/stdin.fifo`, the pipe owned by the container's user. */
export class StdinFifos {
  constructor(private readonly root: string) {}

  dir(taskId: string): string {
    if (!/^tsk_[A-Za-z0-9_-]{1,64}$/.test(taskId)) throw new Error(`not a task id: ${taskId}`);
    return join(this.root, taskId);
  }

  /** A fresh directory with the pipe in it (readable and writable by `user` only); returns the directory. */
  create(taskId: string, user: string): string {
    const [uid, gid] = user.split(':').map(Number);
    mkdirSync(this.root, { recursive: true, mode: 0o711 });
    const st = lstatSync(this.root);
    if (!st.isDirectory() || st.uid !== process.getuid?.()) throw new Error(`the stdin directory ${this.root} must be a directory of this server's user`);
    const dir = this.dir(taskId);
    rmSync(dir, { recursive: true, force: true });
    // The directory stays the server's (0711): the task can open its pipe, never add a file.
    mkdirSync(dir, { mode: 0o711 });
    chmodSync(dir, 0o711);
    const fifo = join(dir, STDIN_FIFO_NAME);
    execFileSync('mkfifo', ['-m', '0600', fifo], { stdio: 'ignore' });
    chownSync(fifo, uid!, gid ?? uid!);
    return dir;
  }

  /** The writer for a task's pipe, or null when it is not there. */
  open(taskId: string): FifoWriter | null {
    const path = join(this.dir(taskId), STDIN_FIFO_NAME);
    try {
      if (!lstatSync(path).isFIFO()) return null;
      return new FifoWriter(path);
    } catch {
      return null;
    }
  }

  remove(taskId: string): void {
    rmSync(this.dir(taskId), { recursive: true, force: true });
  }

  /** Start-up: removes the directories of every task not in `keep`. */
  sweep(keep: ReadonlySet<string>): void {
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch {
      return;
    }
    for (const name of names) if (!keep.has(name)) rmSync(join(this.root, name), { recursive: true, force: true });
  }
}

/**
 * Writes frames into a task's pipe, opened read-write and non-blocking (it never waits for the
 * relay and never sees "no reader"). What the pipe cannot take yet waits in memory, in order;
 * the task manager bounds a task's stdin bytes (requests.stdinBytes), which bounds this queue.
 * Bytes still queued when the server dies are lost (the pipe holds what was written).
 */
export class FifoWriter {
  private fd: number | null;
  private readonly queue: Buffer[] = [];
  private timer: NodeJS.Timeout | null = null;
  private ended = false;
  private drained: (() => void)[] = [];
  private retryMs = 1;

  constructor(path: string) {
    this.fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  }

  get open(): boolean {
    return this.fd !== null && !this.ended;
  }

  /** Bytes accepted but not yet in the pipe. */
  get queued(): number {
    return this.queue.reduce((n, b) => n + b.length, 0);
  }

  write(data: Buffer): boolean {
    if (!this.open) return false;
    this.queue.push(...frames(data));
    this.pump();
    return true;
  }

  /** The EOF frame, after everything written before it. */
  end(): void {
    if (!this.open) return;
    this.ended = true;
    this.queue.push(EOF_FRAME);
    this.pump();
  }

  /** Resolves once the queue is empty or after `ms`. */
  flush(ms = STDIN_FLUSH_MS): Promise<void> {
    if (this.queue.length === 0 || this.fd === null) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.drained.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    this.queue.length = 0;
    this.settle();
  }

  private pump(): void {
    if (this.timer) return;
    while (this.queue.length > 0 && this.fd !== null) {
      try {
        // A frame fits in PIPE_BUF: it is written whole or not at all.
        writeSync(this.fd, this.queue[0]!);
        this.queue.shift();
        this.retryMs = 1;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
          this.timer = setTimeout(() => {
            this.timer = null;
            this.pump();
          }, this.retryMs);
          this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
          this.timer.unref();
          return;
        }
        this.close();
        return;
      }
    }
    this.settle();
  }

  private settle(): void {
    if (this.queue.length > 0) return;
    const waiting = this.drained;
    this.drained = [];
    for (const f of waiting) f();
  }
}
