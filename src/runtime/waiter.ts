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
 * The job line: `[export S=V; ...] exec env -- K=V... [wrapper...] /bin/sh -c <command>` with the task's environment
 * first and the variables the server forces (`forced`, e.g. HOME and the CA bundle's) after it, so
 * that they win as they do on the cold path. `wrapper` runs first and execs the rest (the egress
 * relay and its arguments, as a cold sandbox's entrypoint has them). Names are shell variable
 * names (validated on intake).
 */
export function encodeJob(
  command: string,
  env: Readonly<Record<string, string>>,
  forced: Readonly<Record<string, string>>,
  wrapper: readonly string[] = [],
  secrets: Readonly<Record<string, string>> = {},
): string {
  // Secrets are exported by the waiter's shell, not passed as words to env: a process's
  // arguments are readable by every user of the host, its environment only by its own user.
  // Names the task's env or the server sets win, as on the cold path.
  const exports = Object.entries(secrets)
    .filter(([k]) => !(k in env) && !(k in forced))
    .map(([k, v]) => `export ${shellWord(`${k}=${v}`)}; `)
    .join('');
  const words = ['exec', 'env', '--'];
  for (const [k, v] of Object.entries(env)) if (!(k in forced)) words.push(shellWord(`${k}=${v}`));
  for (const [k, v] of Object.entries(forced)) words.push(shellWord(`${k}=${v}`));
  for (const w of wrapper) words.push(shellWord(w));
  words.push('/bin/sh', '-c', shellWord(command));
  return `${exports}${words.join(' ')}\n`;
}
