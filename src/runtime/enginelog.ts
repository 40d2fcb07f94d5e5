import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { LogPosition, StreamName } from './engine.js';

export type { LogPosition };

/**
 * Podman's `k8s-file` container log, read from the host. conmon writes every chunk a container
 * prints as `<RFC 3339 time> <stdout|stderr> <P|F> <bytes>\n`: `F` closes a line (its newline was
 * stripped), `P` is a partial line. The file holds the exact bytes, in the order they were read
 * from the container, whether or not anyone was attached; it lives in the container's storage
 * and goes with the container. At its size bound conmon replaces it with an empty file (a new
 * inode): whatever of the old one had not been read is gone.
 */
const READ_BYTES = 1024 * 1024;
const FIRST_READ_BYTES = 64 * 1024;

/** Length of conmon's time stamp: RFC 3339 with nanoseconds and a numeric zone. */
const TIME_BYTES = 35;

export class EngineLogParser {
  private pending: Buffer = Buffer.alloc(0);
  /** Where records' contents are gathered; reused by every call (what is emitted is a view of it). */
  private out: Buffer = Buffer.alloc(0);

  /**
   * `emit` gets the records' bytes, consecutive records of a stream joined. The buffer is valid
   * only during the call: the next call reuses its memory, so a caller keeping bytes copies them.
   */
  constructor(private readonly emit: (stream: StreamName, data: Buffer) => void) {}

  /** Feeds raw file bytes; an incomplete last record is held back until the rest arrives. */
  push(chunk: Buffer): void {
    const buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const used = this.consume(buf);
    this.pending = used < buf.length ? Buffer.from(buf.subarray(used)) : Buffer.alloc(0);
  }

  /**
   * Emits the complete records at the start of `buf` and returns the number of bytes they took;
   * the rest (an incomplete record) is left to the caller, who offers it again with what follows.
   */
  consume(buf: Buffer): number {
    // Contents move down over the headers before them (output is never longer than the input):
    // one copy of the input, compacted in place, and no view object per record.
    if (this.out.length < buf.length) this.out = Buffer.allocUnsafe(Math.max(buf.length, FIRST_READ_BYTES));
    const out = this.out;
    out.set(buf);
    let outStart = 0;
    let outEnd = 0;
    let current: StreamName | null = null;
    const flush = () => {
      if (current && outEnd > outStart) this.emit(current, out.subarray(outStart, outEnd));
      outStart = outEnd;
    };
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      // conmon's time stamp has a fixed width (`2026-12-03T08:00:00.123456789+00:00`, 35 bytes):
      // the three separating spaces are looked up only when a record has another layout.
      let s1 = start + TIME_BYTES;
      let s2 = s1 + 7;
      let s3 = s2 + 2;
      if (!(s3 < nl && buf[s1] === 0x20 && buf[s2] === 0x20 && buf[s3] === 0x20 && buf[start + 10] === 0x54)) {
        s1 = buf.indexOf(0x20, start);
        s2 = s1 < 0 || s1 > nl ? -1 : buf.indexOf(0x20, s1 + 1);
        s3 = s2 < 0 || s2 > nl ? -1 : buf.indexOf(0x20, s2 + 1);
      }
      if (s3 >= 0 && s3 < nl) {
        // "stdout" / "stderr": both six bytes, told apart by their fourth ('o' / 'e').
        const stream: StreamName | null = s2 - s1 === 7 && buf[s1 + 1] === 0x73 ? (buf[s1 + 4] === 0x6f ? 'stdout' : 'stderr') : null;
        if (stream) {
          if (stream !== current) {
            flush();
            current = stream;
          }
          out.copyWithin(outEnd, s3 + 1, nl);
          outEnd += nl - s3 - 1;
          if (buf[s2 + 1] === 0x46) out[outEnd++] = 0x0a; // 'F': the line's newline
        }
      }
      start = nl + 1;
    }
    flush();
    return start;
  }

  /** Bytes held back by `push` (an incomplete last record). */
  get buffered(): number {
    return this.pending.length;
  }
}

export interface FollowHandlers {
  /** Complete records' bytes, in file order. `at` is the position just after them. */
  onOutput(stream: StreamName, data: Buffer): void;
  /** After each batch of records: the position up to which everything was delivered. */
  onPosition?(at: LogPosition): void;
  /**
   * The file was replaced while the reader was not looking (its position's inode is gone):
   * output between that position and the new file's start cannot be read back.
   */
  onLost?(): void;
}

/**
 * Follows an engine log from a position until told that the container has exited, then reads
 * to the end. Wakes on inotify events of the log's directory, with a short poll as a fallback.
 */
export class EngineLogFollower {
  private fh: FileHandle | null = null;
  private ino = 0;
  private offset = 0;
  private exited = false;
  private stopped = false;
  private wake: (() => void) | null = null;
  private watcher: FSWatcher | null = null;
  private readonly parser: EngineLogParser;
  readonly done: Promise<void>;

  constructor(
    private readonly path: string,
    private readonly from: LogPosition | null,
    private readonly handlers: FollowHandlers,
    private readonly pollMs = 50,
  ) {
    this.parser = new EngineLogParser((stream, data) => handlers.onOutput(stream, data));
    this.done = this.loop();
    this.done.catch(() => undefined);
  }

  /** The container has exited: read what is left, then end. */
  finish(): Promise<void> {
    this.exited = true;
    this.wake?.();
    return this.done;
  }

  /** Stops reading now (the server is shutting down and leaves the container running). */
  stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    return this.done.catch(() => undefined);
  }

  private async openCurrent(): Promise<boolean> {
    let fh: FileHandle;
    try {
      fh = await open(this.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    const st = await fh.stat();
    await this.fh?.close();
    this.fh = fh;
    if (this.ino === 0 && this.from && this.from.ino === st.ino) {
      this.offset = this.from.offset;
    } else {
      if (this.ino === 0 && this.from && this.from.ino !== st.ino) this.handlers.onLost?.();
      this.offset = 0;
    }
    this.ino = st.ino;
    return true;
  }

  private async loop(): Promise<void> {
    try {
      this.watcher = watch(dirname(this.path), () => this.wake?.());
      this.watcher.on('error', () => undefined);
    } catch {
      this.watcher = null; // polling alone
    }
    // Small at first (most tasks write little), the full size once a read fills it.
    let buf = Buffer.allocUnsafe(FIRST_READ_BYTES);
    try {
      while (!this.stopped) {
        if (!this.fh && !(await this.openCurrent())) {
          if (this.exited) return;
          await this.sleep();
          continue;
        }
        // Whether the exit was known before this read: only a read that began after it may end the loop.
        const exitedBefore = this.exited;
        const { bytesRead } = await this.fh!.read(buf, 0, buf.length, this.offset);
        // An incomplete last record (conmon is writing it) is read again with the rest; a full
        // buffer without one complete record is not conmon's format and is passed over.
        let used = bytesRead > 0 ? this.parser.consume(buf.subarray(0, bytesRead)) : 0;
        if (used === 0 && bytesRead === buf.length) {
          if (buf.length < READ_BYTES) {
            buf = Buffer.allocUnsafe(READ_BYTES);
            continue;
          }
          used = bytesRead;
        }
        if (used > 0) {
          this.offset += used;
          if (bytesRead === buf.length && buf.length < READ_BYTES) buf = Buffer.allocUnsafe(READ_BYTES);
          this.handlers.onPosition?.({ ino: this.ino, offset: this.offset });
          continue;
        }
        // At the end of this file: has conmon replaced it with a new one?
        const now = await stat(this.path).catch(() => null);
        if (now && now.ino !== this.ino) {
          await this.openCurrent();
          continue;
        }
        if (exitedBefore) return;
        if (!this.exited) await this.sleep();
      }
    } finally {
      this.watcher?.close();
      await this.fh?.close();
      this.fh = null;
    }
  }

  private sleep(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.pollMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    });
  }
}
