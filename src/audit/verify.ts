import { relative } from 'node:path';
import { chainFiles, fileLines } from './files.js';
import { GENESIS_HASH, parseRecordLine, recordHash } from './record.js';

/** Where a line of the chain is: its file and 1-based line number. */
export interface ChainPosition {
  file: string;
  line: number;
}

export type VerifyResult =
  | { ok: true; records: number; files: number; lastSeq: number }
  | {
      ok: false;
      /** The first record found wrong: edited, removed, reordered, or a line that is no record. */
      problem: 'edited' | 'removed' | 'reordered' | 'not_a_record';
      /** The seq of that record (for `not_a_record`: the seq expected there). */
      seq: number;
      at: ChainPosition;
      message: string;
    };

/**
 * Checks the chain at `path` across its rotated files, from the first record on: every line is a
 * record whose hash matches its content, seq counts up by one from 1, and each prevHash is the
 * hash of the record before. Names the first record that was edited, removed or moved. A cut at
 * the very end (the last records removed) leaves a chain that still holds.
 */
export async function verifyChain(path: string): Promise<VerifyResult> {
  const files = chainFiles(path);
  const where = (p: ChainPosition) => `${relative(process.cwd(), p.file) || p.file}:${p.line}`;
  // Pass 1: every seq that appears, so that a gap can be told apart from a record moved elsewhere.
  const seen = new Map<number, ChainPosition>();
  for (const f of files) {
    for await (const { line, no } of fileLines(f.path)) {
      const r = parseRecordLine(line);
      if (r && !seen.has(r.seq)) seen.set(r.seq, { file: f.path, line: no });
    }
  }
  let prev = { seq: 0, hash: GENESIS_HASH };
  let records = 0;
  for (const f of files) {
    for await (const { line, no } of fileLines(f.path)) {
      const at = { file: f.path, line: no };
      const r = parseRecordLine(line);
      const expected = prev.seq + 1;
      if (!r) {
        return { ok: false, problem: 'not_a_record', seq: expected, at, message: `${where(at)} is not an audit record (where seq ${expected} belongs)` };
      }
      if (recordHash(r) !== r.hash) {
        return { ok: false, problem: 'edited', seq: r.seq, at, message: `record seq ${r.seq} at ${where(at)} was edited: its hash does not match its content` };
      }
      if (r.seq !== expected) {
        const elsewhere = seen.get(expected);
        if (elsewhere) {
          return {
            ok: false,
            problem: 'reordered',
            seq: expected,
            at: elsewhere,
            message: `record seq ${expected} was moved: it is at ${where(elsewhere)}, and seq ${r.seq} stands where it belongs (${where(at)})`,
          };
        }
        return {
          ok: false,
          problem: 'removed',
          seq: expected,
          at,
          message: `record seq ${expected} was removed${r.seq > expected + 1 ? ` (seq ${expected}..${r.seq - 1} are missing)` : ''}: seq ${r.seq} follows seq ${prev.seq} at ${where(at)}`,
        };
      }
      if (r.prevHash !== prev.hash) {
        // The record before was rewritten with a hash of its own: its successor's link gives it away.
        return {
          ok: false,
          problem: 'edited',
          seq: prev.seq,
          at: seen.get(prev.seq) ?? at,
          message: `record seq ${prev.seq} was edited: record seq ${r.seq} at ${where(at)} carries another prevHash`,
        };
      }
      prev = { seq: r.seq, hash: r.hash };
      records++;
    }
  }
  return { ok: true, records, files: files.length, lastSeq: prev.seq };
}
