import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

/**
 * Runs the host commands the server needs many of (mount, umount, mkfs.ext4) through one
 * long-lived helper process, which runs each of them. Node forks its whole address space for
 * every child it spawns, on the event loop: at a server's RSS that costs several milliseconds per
 * command, during which no request, output or exit is handled. The helper is small, so its forks
 * are cheap, and they happen outside the server's process.
 *
 * The helper is the compiled host helper (deploy/host-helper/host_helper.c, set with `use`),
 * which also makes the mount and umount calls the server needs itself instead of exec'ing
 * mount(8), or else this bash script, which forks each command. Both speak one protocol. A
 * request is NUL-separated words on the helper's stdin: an id, the word count, the words. Each
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

interface Helper {
  child: ChildProcessByStdio<Writable, Readable, null>;
  /** Commands sent to this helper and not answered yet. */
  pending: Map<number, Pending>;
}

export class HostCommands {
  private current: Helper | null = null;
  private nextId = 1;
  private program: { file: string; args: string[] };

  constructor(shell = 'bash') {
    this.program = { file: shell, args: ['-c', HELPER] };
  }

  /**
   * Runs later commands through the compiled host helper at `path`. A helper already running
   * answers what it was sent, then ends.
   */
  use(path: string): void {
    if (this.program.file === path) return;
    this.program = { file: path, args: [] };
    this.close();
  }

  /** The program commands go through now. */
  get helperPath(): string {
    return this.program.file;
  }

  /** Runs `file` with `args`; resolves with its output, rejects with HostCommandError when it fails. */
  run(file: string, args: readonly string[]): Promise<string> {
    for (const w of [file, ...args]) if (w.includes('\0')) return Promise.reject(new Error('a command word holds a NUL byte'));
    const h = this.helper();
    const id = this.nextId++;
    const command = [file, ...args].join(' ');
    return new Promise((resolve, reject) => {
      h.pending.set(id, { command, resolve, reject });
      if (h.pending.size === 1) h.child.ref();
      const words = [String(id), String(args.length + 1), file, ...args];
      h.child.stdin.write(`${words.join('\0')}\0`);
    });
  }

  /** Ends the helper once its commands have answered (it is started again on the next run). */
  close(): void {
    this.current?.child.stdin.end();
    this.current = null;
  }

  private helper(): Helper {
    const live = this.current;
    if (live && live.child.exitCode === null && !live.child.killed) return live;
    const child = spawn(this.program.file, this.program.args, { stdio: ['pipe', 'pipe', 'ignore'] });
    const h: Helper = { child, pending: new Map() };
    this.current = h;
    let buf = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      buf += d;
      let end: number;
      while ((end = buf.indexOf('\0')) >= 0) {
        this.answer(h, buf.slice(0, end));
        buf = buf.slice(end + 1);
      }
    });
    child.stdin.on('error', () => undefined);
    const gone = (why: string) => {
      if (this.current === h) this.current = null;
      for (const [id, p] of h.pending) {
        h.pending.delete(id);
        p.reject(new Error(`${p.command}: the host command helper ${why}`));
      }
    };
    child.on('error', (err) => gone(`could not run: ${err.message}`));
    child.on('exit', (code, signal) => {
      // Answers written before the exit may still be in the pipe: read them first (a command the
      // helper left running may hold the pipe open, so not for longer than a moment).
      const fire = () => gone(`exited (${signal ?? code})`);
      if (child.stdout.readableEnded) return fire();
      child.stdout.once('end', fire);
      setTimeout(fire, 1000);
    });
    // An idle helper does not keep the process alive; one with commands under way does.
    child.unref();
    (child.stdout as Readable & { unref?: () => void }).unref?.();
    (child.stdin as Writable & { unref?: () => void }).unref?.();
    return h;
  }

  private answer(h: Helper, msg: string): void {
    const m = /^(\d+) (\d+) ([^]*)$/.exec(msg);
    if (!m) return;
    const p = h.pending.get(Number(m[1]));
    if (!p) return;
    h.pending.delete(Number(m[1]));
    if (h.pending.size === 0) h.child.unref();
    const code = Number(m[2]);
    if (code === 0) p.resolve(m[3]!);
    else p.reject(new HostCommandError(p.command, code, m[3]!.slice(0, MAX_OUTPUT)));
  }
}

/** The server's one helper. */
export const hostCommands = new HostCommands();

/** Runs a host command through the shared helper (resolves with its output). */
export function hostRun(file: string, args: readonly string[]): Promise<string> {
  return hostCommands.run(file, args);
}
