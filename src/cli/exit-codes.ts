import { ConnectionError, SandboxShiftError } from '../client/errors.js';
import type { ExitFrame } from '../client/types.js';

/**
 * The CLI's own exit codes. `run` otherwise exits with the task's exit code (0-255), so these
 * follow the conventions of `timeout(1)`, shells and `docker run` to stay recognisable.
 */
export const EXIT = {
  /** Bad arguments (also an unknown command). */
  USAGE: 64,
  /** The server could not be reached (connection refused, DNS, reset), or answered 5xx. */
  UNREACHABLE: 69,
  /** The task ended with status `error`: the server could not run it (engine error, image missing, lost). */
  TASK_ERROR: 70,
  /** The task ran past its timeout (status timed_out), as `timeout(1)`. */
  TIMEOUT: 124,
  /** The server refused the request (a 4xx answer: validation, limits, egress, not found...), as `docker run`. */
  REFUSED: 125,
  /** The task was cancelled (Ctrl-C, `sandboxshift cancel`, or another client). */
  CANCELLED: 130,
  /** The task was killed by its memory limit (reason oom), as a SIGKILL. */
  OOM: 137,
} as const;

/** The exit code for a task's exit frame. */
export function exitCodeFor(exit: Pick<ExitFrame, 'status' | 'exitCode' | 'reason'>): number {
  if (exit.status === 'timed_out') return EXIT.TIMEOUT;
  if (exit.status === 'cancelled') return EXIT.CANCELLED;
  if (exit.reason === 'oom') return EXIT.OOM;
  if (exit.status === 'error') return EXIT.TASK_ERROR;
  if (exit.status === 'succeeded') return 0;
  return exit.exitCode === null ? EXIT.TASK_ERROR : exit.exitCode & 255;
}

/** Prints an error as the CLI shows it (the server's code and message) and gives its exit code. */
export function reportError(err: unknown, write: (s: string) => void): number {
  if (err instanceof SandboxShiftError) {
    write(`sandboxshift: ${err.code}: ${err.message}\n`);
    if (err.details !== undefined) write(`  details: ${JSON.stringify(err.details)}\n`);
    return err.status >= 500 ? EXIT.UNREACHABLE : EXIT.REFUSED;
  }
  if (err instanceof ConnectionError) {
    write(`sandboxshift: UNREACHABLE: ${err.message}\n`);
    return EXIT.UNREACHABLE;
  }
  write(`sandboxshift: ${err instanceof Error ? err.message : String(err)}\n`);
  return 1;
}
