import { closeSync, createReadStream, existsSync, fstatSync, openSync, readdirSync, readSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

/** One file of the chain: rotated files (`<path>.<first seq>`) in order, then the current one. */
export interface ChainFile {
  path: string;
  /** The seq of its first record as its name says (rotated files); null for the current file. */
  firstSeq: number | null;
}

/** The files of the chain at `path`, oldest first. */
export function chainFiles(path: string): ChainFile[] {
  const dir = dirname(path);
  const base = basename(path);
  const rotated: ChainFile[] = [];
  if (existsSync(dir)) {
    for (const name of readdirSync(dir)) {
      if (!name.startsWith(`${base}.`)) continue;
      const suffix = name.slice(base.length + 1);
      if (/^[1-9]\d{0,15}$/.test(suffix)) rotated.push({ path: join(dir, name), firstSeq: Number(suffix) });
    }
  }
  rotated.sort((a, b) => a.firstSeq! - b.firstSeq!);
  return existsSync(path) ? [...rotated, { path, firstSeq: null }] : rotated;
}

/** The lines of a file, with their 1-based numbers (the empty text after a final newline is not a line). */
export async function* fileLines(path: string): AsyncGenerator<{ line: string; no: number }> {
  const rl = createInterface({ input: createReadStream(path, { encoding: 'utf8' }), crlfDelay: Infinity });
  let no = 0;
  try {
    for await (const line of rl) yield { line, no: ++no };
  } finally {
    rl.close();
  }
}

const CHUNK = 64 * 1024;

/**
 * The last non-empty lines of a file, last first, read backwards in chunks (at most `max` lines).
 * `endsWithNewline` says whether the file's last byte is a newline (false: a torn last write).
 */
export function lastLines(path: string, max: number): { lines: string[]; size: number; endsWithNewline: boolean } {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { lines: [], size: 0, endsWithNewline: true };
    throw err;
  }
  try {
    const size = fstatSync(fd).size;
    let pos = size;
    let tail = Buffer.alloc(0);
    const lines: string[] = [];
    let endsWithNewline = true;
    if (size > 0) {
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, size - 1);
      endsWithNewline = last[0] === 0x0a;
    }
    while (pos > 0 && lines.length < max) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, pos);
      tail = Buffer.concat([buf, tail]);
      // Every complete line in `tail` but the first (which may continue into the previous chunk).
      let end = tail.length;
      for (let i = tail.length - 1; i >= 0 && lines.length < max; i--) {
        if (tail[i] !== 0x0a) continue;
        const line = tail.subarray(i + 1, end).toString('utf8');
        if (line.length > 0) lines.push(line);
        end = i;
      }
      tail = tail.subarray(0, end);
    }
    if (pos === 0 && tail.length > 0 && lines.length < max) lines.push(tail.toString('utf8'));
    return { lines, size, endsWithNewline };
  } finally {
    closeSync(fd);
  }
}

/** The first line of a file (null when it has none). */
export function firstLine(path: string): string | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    let out = Buffer.alloc(0);
    let pos = 0;
    for (;;) {
      const buf = Buffer.alloc(CHUNK);
      const n = readSync(fd, buf, 0, CHUNK, pos);
      if (n === 0) break;
      const nl = buf.subarray(0, n).indexOf(0x0a);
      if (nl >= 0) return Buffer.concat([out, buf.subarray(0, nl)]).toString('utf8');
      out = Buffer.concat([out, buf.subarray(0, n)]);
      pos += n;
    }
    return out.length > 0 ? out.toString('utf8') : null;
  } finally {
    closeSync(fd);
  }
}
