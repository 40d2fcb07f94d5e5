import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

/**
 * Runs the host commands the server needs many of (mount, umount, mkfs.ext4) through one
 * long-lived bash, which forks each of them. Node forks its whole address space for every child
 * it spawns, on the event loop: at a server's RSS that costs several milliseconds per command,
 * during which no request, output or exit is handled. bash is small, so its forks are cheap,
 * and they happen outside the server's process.
 *
 * A request is NUL-separated words on the helper's stdin: an id, the word count, the words. Each
 * command runs in the background (several at once, as separate execFile calls would); its
 * answer is one write `id rc output\0` (stdout and stderr together, newlines as spaces, at most
 * MAX_OUTPUT bytes, so the write is atomic on the pipe). Commands get /dev/null as stdin.
 */
const HELPER = [
  "while IFS= read -r -d '' id && IFS= read -r -d '' n; do",
  '  args=()',
  "  for ((i = 0; i < n; i++)); do IFS= read -r -d '' a; args+=(\"$a\"); done",
  '  {',
  '    out=$("${args[@]}" 2>&1 </dev/null)',
  '    rc=$?',
  "    out=${out//[$'\\n\\r']/ }",
  "    printf '%s %d %s\\0' \"$id\" \"$rc\" \"${out:0:2000}\"",
  '  } &',
  'done',
  'wait',
].join('\n');

/** Bytes of a command's output kept in its answer (the error message of a failure). */
const MAX_OUTPUT = 2000;

export class HostCommandError extends Error {
  constructor(
    readonly command: string,
    readonly code: number,
    /** stdout and stderr of the command, joined (execFile's errors carry `stderr` too). */
    readonly stderr: string,
  ) {
    super(`Command failed: ${command} (exit ${code})${stderr ? `: ${stderr.trim()}` : ''}`);
    this.name = 'HostCommandError';
  }
}

interface Pending {
  command: string;
  resolve: (output: string) => void;
  reject: (err: Error) => void;
}

export class HostCommands {
  private child: ChildProcessByStdio<Writable, Readable, null> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buf = '';

  constructor(private readonly shell = 'bash') {}

  /** Runs `file` with `args`; resolves with its output, rejects with HostCommandError when it fails. */
  run(file: string, args: readonly string[]): Promise<string> {
    for (const w of [file, ...args]) if (w.includes('\0')) return Promise.reject(new Error('a command word holds a NUL byte'));
    const child = this.helper();
    const id = this.nextId++;
    const command = [file, ...args].join(' ');
    return new Promise((resolve, reject) => {
      this.pending.set(id, { command, resolve, reject });
      if (this.pending.size === 1) child.ref();
      const words = [String(id), String(args.length + 1), file, ...args];
      child.stdin.write(`${words.join('\0')}\0`);
    });
  }

  /** Ends the helper once its commands have answered (it is started again on the next run). */
  close(): void {
    this.child?.stdin.end();
    this.child = null;
  }

  private helper(): ChildProcessByStdio<Writable, Readable, null> {
    if (this.child && this.child.exitCode === null && !this.child.killed) return this.child;
    const child = spawn(this.shell, ['-c', HELPER], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child = child;
    this.buf = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => this.answer(d));
    child.stdin.on('error', () => undefined);
    const gone = (why: string) => {
      if (this.child === child) this.child = null;
      for (const [id, p] of this.pending) {
        this.pending.delete(id);
        p.reject(new Error(`${p.command}: the host command helper ${why}`));
      }
    };
    child.on('error', (err) => gone(`could not run: ${err.message}`));
    child.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
    // An idle helper does not keep the process alive; one with commands under way does.
    child.unref();
    (child.stdout as Readable & { unref?: () => void }).unref?.();
    (child.stdin as Writable & { unref?: () => void }).unref?.();
    return child;
  }

  private answer(d: string): void {
    this.buf += d;
    let end: number;
    while ((end = this.buf.indexOf('\0')) >= 0) {
      const msg = this.buf.slice(0, end);
      this.buf = this.buf.slice(end + 1);
      const m = /^(\d+) (\d+) ([^]*)$/.exec(msg);
      if (!m) continue;
      const p = this.pending.get(Number(m[1]));
      if (!p) continue;
      this.pending.delete(Number(m[1]));
      if (this.pending.size === 0) this.child?.unref();
      const code = Number(m[2]);
      if (code === 0) p.resolve(m[3]!);
      else p.reject(new HostCommandError(p.command, code, m[3]!.slice(0, MAX_OUTPUT)));
    }
  }
}

/** The server's one helper. */
export const hostCommands = new HostCommands();

/** Runs a host command through the shared helper (resolves with its output). */
export function hostRun(file: string, args: readonly string[]): Promise<string> {
  return hostCommands.run(file, args);
}
