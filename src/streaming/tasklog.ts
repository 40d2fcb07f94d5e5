import { EventEmitter } from 'node:events';
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { StreamName } from '../runtime/engine.js';
import type { Frame, FrameBody } from './frames.js';
import { LineSplitter } from './lines.js';

const INDEX_EVERY = 256;

export const FRAMES_FILE = 'frames.ndjson';
export const streamFile = (stream: StreamName) => `${stream}.bin`;

/**
 * A task's event log, the one source every reader streams from: every frame is appended, with its
 * sequence number, to `frames.ndjson` on disk before anyone is told about it, so replay, late
 * subscribers, restarts and slow clients all read from the same place. Exact stream bytes go to
 * `<stream>.bin`. Memory per log is a sparse seq→offset index, nothing else.
 */
export class TaskLog extends EventEmitter {
  private fd: number | null;
  private readonly streamFds = new Map<StreamName, number>();
  private lastSeq: number;
  private size: number;
  private closed: boolean;
  /** offsets[k] is the byte offset of frame seq = k * INDEX_EVERY + 1. */
  private readonly offsets: number[];

  private constructor(
    readonly dir: string,
    state: { fd: number | null; lastSeq: number; size: number; offsets: number[]; closed: boolean },
  ) {
    super();
    this.setMaxListeners(0);
    this.fd = state.fd;
    this.lastSeq = state.lastSeq;
    this.size = state.size;
    this.offsets = state.offsets;
    this.closed = state.closed;
  }

  /** Opens (or creates) the log in `dir`, recovering the last seq and index from disk. */
  static open(dir: string): TaskLog {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, FRAMES_FILE);
    const fd = openSync(path, 'a+');
    const { lastSeq, offsets, size, closed } = scan(fd);
    if (closed) {
      closeSync(fd);
      return new TaskLog(dir, { fd: null, lastSeq, size, offsets, closed });
    }
    return new TaskLog(dir, { fd, lastSeq, size, offsets, closed });
  }

  static exists(dir: string): boolean {
    return existsSync(join(dir, FRAMES_FILE));
  }

  get path(): string {
    return join(this.dir, FRAMES_FILE);
  }

  get seq(): number {
    return this.lastSeq;
  }

  get bytes(): number {
    return this.size;
  }

  /** True once the exit frame is on disk. */
  get finished(): boolean {
    return this.closed;
  }

  append(body: FrameBody): Frame {
    if (this.closed || this.fd === null) throw new Error('task log is closed');
    const frame = { ...body, seq: this.lastSeq + 1 } as Frame;
    const line = Buffer.from(`${JSON.stringify(frame)}\n`);
    if ((frame.seq - 1) % INDEX_EVERY === 0) this.offsets.push(this.size);
    writeSync(this.fd, line);
    this.size += line.length;
    this.lastSeq = frame.seq;
    if (frame.type === 'exit') this.close();
    this.emit('append', frame);
    return frame;
  }

  appendBytes(stream: StreamName, data: Buffer): void {
    let fd = this.streamFds.get(stream);
    if (fd === undefined) {
      fd = openSync(join(this.dir, streamFile(stream)), 'a');
      this.streamFds.set(stream, fd);
    }
    writeSync(fd, data);
  }

  /** Byte offset from which frames after `afterSeq` start (reading may skip a few lines). */
  offsetAfter(afterSeq: number): number {
    if (afterSeq <= 0) return 0;
    const k = Math.min(Math.floor(afterSeq / INDEX_EVERY), this.offsets.length - 1);
    return k >= 0 ? this.offsets[k]! : 0;
  }

  private close(): void {
    this.closed = true;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
    for (const fd of this.streamFds.values()) closeSync(fd);
    this.streamFds.clear();
  }

  /** Releases file handles without writing an exit frame (server shutdown); wakes followers. */
  release(): void {
    this.close();
    this.emit('append', null);
  }
}

function scan(fd: number): { lastSeq: number; offsets: number[]; size: number; closed: boolean } {
  const size = fstatSync(fd).size;
  const offsets: number[] = [];
  let lastSeq = 0;
  let closed = false;
  let pos = 0;
  const splitter = new LineSplitter();
  let lineStart = 0;
  const buf = Buffer.alloc(1024 * 1024);
  while (pos < size) {
    const n = readSync(fd, buf, 0, buf.length, pos);
    if (n <= 0) break;
    pos += n;
    for (const line of splitter.push(buf.subarray(0, n))) {
      let frame: Frame;
      try {
        frame = JSON.parse(line) as Frame;
      } catch {
        pos = size; // a torn line from a crash: everything from here on is dropped below
        break;
      }
      if ((frame.seq - 1) % INDEX_EVERY === 0) offsets.push(lineStart);
      lineStart += Buffer.byteLength(line) + 1;
      lastSeq = frame.seq;
      if (frame.type === 'exit') closed = true;
    }
  }
  // Drop a partial last line left by a crash so that appends start on a line boundary.
  if (lineStart < size) ftruncateSync(fd, lineStart);
  return { lastSeq, offsets, size: lineStart, closed };
}
