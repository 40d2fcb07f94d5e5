import { WORKSPACE_MOUNT } from './spec.js';

/**
 * A pre-started sandbox's first process: `/bin/sh -c WAITER_SCRIPT`. It reads one line from
 * stdin (the job, see encodeJob), changes into /workspace again (the workspace was mounted over
 * it after the container started, so the directory it started in is the empty slot under it)
 * and evaluates the line, which execs `/bin/sh -c <command>` with the task's environment. From
 * then on the process tree is the cold path's: the init, then the task's shell. The rest of
 * stdin is the task's. `nl` holds a newline for the job line (which has none of its own).
 * Exit 125 (the engine's own "could not run" code) when the job never came or the directory is
 * not there.
 */
export const WAITER_SCRIPT = `nl='\n'; IFS= read -r job || exit 125; cd ${WORKSPACE_MOUNT} || exit 125; eval "$job"`;

/** The largest job line a waiter is given (dash reads stdin one byte per call); larger jobs start cold. */
export const MAX_JOB_BYTES = 256 * 1024;

/** A word for the waiter's `eval`: single-quoted, newlines as `$nl` outside the quotes. */
export function shellWord(s: string): string {
  return `'${s.replace(/'/g, `'\\''`).replace(/\n/g, `'"$nl"'`)}'`;
}

/**
 * The job line: `K=V... exec [wrapper...] /bin/sh -c <command>`: the secrets first, then the
 * task's environment, then the variables the server forces (`forced`, e.g. HOME and the CA
 * bundle's), so that later names win as they do on the cold path. They are assignments before
 * `exec`, which the shell exports to the program it becomes: no `env` process (one exec fewer),
 * no value ever a process argument (which every user of the host can read; a process's
 * environment only its own user). A task variable named like one of the waiter's (`nl`, `job`)
 * is the task's alone. `wrapper` runs first and execs the rest (the egress relay and its
 * arguments, as a cold sandbox's entrypoint has them). Names are shell variable names (validated
 * on intake).
 */
export function encodeJob(
  command: string,
  env: Readonly<Record<string, string>>,
  forced: Readonly<Record<string, string>>,
  wrapper: readonly string[] = [],
  secrets: Readonly<Record<string, string>> = {},
): string {
  const vars = new Map<string, string>(Object.entries(secrets));
  for (const [k, v] of Object.entries(env)) vars.set(k, v);
  for (const [k, v] of Object.entries(forced)) vars.set(k, v);
  // Assignments are expanded and made left to right, the command's words before any of them:
  // the waiter's own `nl` comes last, so that every value before it still reads `$nl` as a newline.
  const order = [...vars].sort(([a], [b]) => Number(a === 'nl') - Number(b === 'nl'));
  const words = [...order.map(([k, v]) => `${k}=${shellWord(v)}`), 'exec', ...wrapper.map(shellWord), '/bin/sh', '-c', shellWord(command)];
  return `${words.join(' ')}\n`;
}
