import { closeSync, openSync, readSync } from 'node:fs';
import { LineSplitter } from './lines.js';
import type { TaskLog } from './tasklog.js';

/**
 * Reads a task log's frames in order from disk, starting after a given seq. Each reader has its
 * own file position, so one slow reader never holds back the task or another reader; what it has
 * not read yet stays on disk, not in memory.
 */
export class LogCursor {
  private readonly fd: number;
  private offset: number;
  private readonly lines = new LineSplitter();
  private readonly buf: Buffer;
  private lastSeq: number;

  constructor(
    private readonly log: TaskLog,
    afterSeq: number,
    chunkBytes = 64 * 1024,
  ) {
    this.fd = openSync(log.path, 'r');
    this.offset = log.offsetAfter(afterSeq);
    this.lastSeq = afterSeq;
    this.buf = Buffer.alloc(chunkBytes);
  }

  /** Complete frame lines (JSON text) not yet returned; [] when caught up. */
  read(): string[] {
    const out: string[] = [];
    while (out.length === 0) {
      const limit = this.log.bytes; // only whole, appended lines
      if (this.offset >= limit) break;
      const n = readSync(this.fd, this.buf, 0, Math.min(this.buf.length, limit - this.offset), this.offset);
      if (n <= 0) break;
      this.offset += n;
      for (const line of this.lines.push(this.buf.subarray(0, n))) {
        const seq = seqOf(line);
        if (seq > this.lastSeq) {
          out.push(line);
          this.lastSeq = seq;
        }
      }
    }
    return out;
  }

  /** Bytes of the log this cursor has not read yet. */
  get backlog(): number {
    return this.log.bytes - this.offset;
  }

  get seq(): number {
    return this.lastSeq;
  }

  /** True when everything, including the exit frame, has been read. */
  get done(): boolean {
    return this.log.finished && this.offset >= this.log.bytes && this.lines.pending === 0;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Frames are written by us with `seq` as the last key: `...,"seq":N}`. */
function seqOf(line: string): number {
  const i = line.lastIndexOf('"seq":');
  return i < 0 ? 0 : Number.parseInt(line.slice(i + 6), 10);
}
