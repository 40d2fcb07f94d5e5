import { closeSync, fstatSync, mkdirSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { chainFiles, firstLine, lastLines } from './files.js';
import { withFileLock } from './lock.js';
import { GENESIS_HASH, parseRecordLine, sealRecord, type AuditEntry, type AuditRecord } from './record.js';

/** How long an append waits for another process (the server, the keys command) to finish its own. */
const LOCK_TIMEOUT_MS = 10_000;
/** How far back an append looks for the last whole record when the file ends in damaged lines. */
const TAIL_LINES = 64;

/** The audit log file of a configuration: `audit.path`, or `<dataDir>/audit.jsonl`. */
export function auditPath(config: Readonly<Pick<Config, 'audit' | 'dataDir'>>, cwd = process.cwd()): string {
  return resolve(cwd, config.audit.path ?? join(config.dataDir, 'audit.jsonl'));
}

/**
 * The append-only audit log: one canonical JSON record per line, each carrying the hash of the
 * one before it. Several processes may append to the same file (the server and the keys command):
 * every append takes an exclusive lock file, re-reads the chain's last record and writes with
 * O_APPEND, so that records from both form one chain. Past `rotateBytes` the file is renamed to
 * `<path>.<seq of its first record>` and the chain continues in a new file.
 */
export class AuditLog {
  readonly path: string;
  private readonly lockPath: string;
  /** The current file as this process left it after its last append: unchanged since, its tail need not be read again. */
  private last: { ino: number; size: number; seq: number; hash: string } | null = null;

  constructor(
    path: string,
    private readonly rotateBytes: number,
    private readonly now: () => Date = () => new Date(),
    private readonly lockTimeoutMs = LOCK_TIMEOUT_MS,
  ) {
    this.path = resolve(path);
    this.lockPath = `${this.path}.lock`;
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
  }

  static forConfig(config: Readonly<Pick<Config, 'audit' | 'dataDir'>>, cwd = process.cwd()): AuditLog {
    return new AuditLog(auditPath(config, cwd), config.audit.rotateBytes);
  }

  /** Appends one record and returns it. Synchronous: records are written in the order of the calls. */
  append(entry: AuditEntry): AuditRecord {
    return withFileLock(this.lockPath, this.lockTimeoutMs, () => {
      const tail = this.tail();
      const record = sealRecord(entry, tail.seq + 1, tail.hash, this.now());
      const line = `${JSON.stringify(record)}\n`;
      if (tail.currentBytes > 0 && tail.currentBytes + Buffer.byteLength(line) > this.rotateBytes) this.rotate();
      const fd = openSync(this.path, 'a', 0o600);
      try {
        // A torn last line (a crash mid-write) stays what it is, on a line of its own.
        if (!tail.endsWithNewline && fstatSync(fd).size > 0) writeSync(fd, '\n');
        writeSync(fd, line);
        const st = fstatSync(fd);
        this.last = { ino: st.ino, size: st.size, seq: record.seq, hash: record.hash };
      } catch (err) {
        this.last = null;
        throw err;
      } finally {
        closeSync(fd);
      }
      return record;
    });
  }

  /** The chain's last record (seq and hash) and the current file's size; call under the lock. */
  private tail(): { seq: number; hash: string; currentBytes: number; endsWithNewline: boolean } {
    if (this.last) {
      // Nobody else has appended, rotated or replaced the file since this process's last append.
      const st = statSync(this.path, { throwIfNoEntry: false });
      if (st && st.ino === this.last.ino && st.size === this.last.size) {
        return { seq: this.last.seq, hash: this.last.hash, currentBytes: st.size, endsWithNewline: true };
      }
    }
    const files = chainFiles(this.path);
    let current: { size: number; endsWithNewline: boolean } | null = null;
    for (const f of files.reverse()) {
      const { lines, size, endsWithNewline } = lastLines(f.path, TAIL_LINES);
      current ??= f.path === this.path ? { size, endsWithNewline } : { size: 0, endsWithNewline: true };
      for (const line of lines) {
        const r = parseRecordLine(line);
        if (r) return { seq: r.seq, hash: r.hash, currentBytes: current.size, endsWithNewline: current.endsWithNewline };
      }
    }
    return { seq: 0, hash: GENESIS_HASH, currentBytes: current?.size ?? 0, endsWithNewline: current?.endsWithNewline ?? true };
  }

  private rotate(): void {
    const first = parseRecordLine(firstLine(this.path) ?? '');
    // A current file whose first line is no record is still kept, under a name after the last rotated one.
    const seq = first?.seq ?? (chainFiles(this.path).at(-2)?.firstSeq ?? 0) + 1;
    renameSync(this.path, `${this.path}.${seq}`);
  }
}
