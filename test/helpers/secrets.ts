/** A secret value, a command that prints it in every way, and a search of the data directory for it. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// 20 characters: `${S%??????????}` is its first half, `${S#??????????}` its second.
export const SECRET = 'hunter2-Zq9xW7-pL4kR';
/** The value and each of its halves (a partial echo is a leak too). */
export const SECRET_PARTS = [SECRET, SECRET.slice(0, 10), SECRET.slice(10)];
export const leaks = (text: string) => SECRET_PARTS.some((p) => text.includes(p));
const half = (n: 1 | 2) => (n === 1 ? '"${TOKEN%??????????}"' : '"${TOKEN#??????????}"');
/** Prints the secret whole, split across two writes 0.8 s apart, and on stderr. */
export const PRINTS = [
  'echo "len:${#TOKEN} plain:$PLAIN"',
  'echo "whole:$TOKEN"',
  `printf '%s' ${half(1)}`,
  'sleep 0.8',
  `printf '%s\\n' ${half(2)}`,
  'echo "err:$TOKEN" >&2',
  'echo done',
].join('; ');
export const EXPECTED_STDOUT = 'len:20 plain:visible\nwhole:***\n***\ndone\n';

/**
 * Every regular file under the data directory `dir` that holds the secret or a half of it, but for the
 * workspaces (the task's own files, sparse filesystem images of the quota's size) and the empty
 * filesystem they are copied from (made before any task).
 */
export function filesContaining(dir: string): string[] {
  const hits: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory() && (p === join(dir, 'workspaces') || p === join(dir, 'workspace-template'))) continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && leaks(readFileSync(p).toString('latin1'))) hits.push(p);
    }
  };
  walk(dir);
  return hits;
}

