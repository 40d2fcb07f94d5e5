import type { Config } from '../config/schema.js';
import { chainFiles } from './files.js';
import { auditPath } from './log.js';
import { verifyChain } from './verify.js';

/**
 * `sandboxshift audit verify`: 0 when the chain at the configuration's audit path holds across
 * its rotated files, 1 naming the first record that was edited, removed or moved (or when
 * there is no audit log at all).
 */
export async function auditVerifyCommand(config: Readonly<Config>, io: { cwd: string; out: (s: string) => void; err: (s: string) => void }): Promise<number> {
  const path = auditPath(config, io.cwd);
  if (chainFiles(path).length === 0) {
    io.err(`sandboxshift: no audit log at ${path}\n`);
    return 1;
  }
  const result = await verifyChain(path);
  if (!result.ok) {
    io.err(`audit chain broken: ${result.message}\n`);
    return 1;
  }
  io.out(`audit chain holds: ${result.records} records (seq 1..${result.lastSeq}) in ${result.files} file${result.files === 1 ? '' : 's'} at ${path}\n`);
  return 0;
}
