/**
 * Helpers for the benchmarks in bench/: argument parsing, the server as a child process,
 * /proc probes (RSS, CPU, open files, TCP queues), an HTTP/WebSocket client of the v1 API,
 * timing of raw `podman run`, and plain-text tables.
 * Nothing here talks to anything but 127.0.0.1, unix sockets and local processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync, type WriteStream } from 'node:fs';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

export const MiB = 1024 * 1024;
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const now = () => performance.now();

/** The repository root (holds package.json and deploy/), found from this module's location. */
export function repoRoot(start = dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'deploy'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`cannot find the repository root above ${start}`);
}

// ---------------------------------------------------------------------------------------------
// Arguments

export interface FlagSpec {
  name: string;
  kind: 'int' | 'number' | 'string' | 'bool';
  help: string;
  min?: number;
  max?: number;
  choices?: readonly string[];
}

export class UsageError extends Error {}

/** `--name value`, `--name=value`, and bare `--flag` for booleans. Unknown flags are errors. */
export function parseFlags(argv: readonly string[], specs: readonly FlagSpec[]): Map<string, string | number | boolean> {
  const out = new Map<string, string | number | boolean>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') throw new UsageError('');
    const m = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!m) throw new UsageError(`unexpected argument "${arg}"`);
    const spec = specs.find((s) => s.name === m[1]);
    if (!spec) throw new UsageError(`unknown flag --${m[1]}`);
    if (spec.kind === 'bool') {
      if (m[2] !== undefined) throw new UsageError(`--${spec.name} takes no value`);
      out.set(spec.name, true);
      continue;
    }
    const raw = m[2] ?? argv[++i];
    if (raw === undefined) throw new UsageError(`--${spec.name} needs a value`);
    if (spec.kind === 'string') {
      if (spec.choices && !spec.choices.includes(raw)) throw new UsageError(`--${spec.name} must be one of ${spec.choices.join(', ')}`);
      out.set(spec.name, raw);
      continue;
    }
    const n = Number(raw);
    if (!Number.isFinite(n) || (spec.kind === 'int' && !Number.isInteger(n))) throw new UsageError(`--${spec.name} must be ${spec.kind === 'int' ? 'an integer' : 'a number'}`);
    if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
      throw new UsageError(`--${spec.name} must be in ${spec.min ?? '-inf'}..${spec.max ?? 'inf'}`);
    }
    out.set(spec.name, n);
  }
  return out;
}

export function usage(specs: readonly FlagSpec[]): string {
  return specs.map((s) => `  --${s.name}${s.kind === 'bool' ? '' : ` <${s.kind}>`}`.padEnd(26) + s.help).join('\n');
}

// ---------------------------------------------------------------------------------------------
// /proc

export interface ProcMemory {
  rss: number;
  hwm: number;
}

/** VmRSS and VmHWM (peak RSS since start, kept by the kernel) of a process, in bytes. */
export function procMemory(pid: number): ProcMemory | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** User + system CPU time of a process in seconds. */
export function procCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

/** File descriptors of a process that are open on `path` (from /proc/<pid>/fd), read-only. */
export function fdsOpenOn(pid: number, path: string): number[] {
  let names: string[];
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const name of names) {
    if (fdTarget(pid, Number(name)) === path) out.push(Number(name));
  }
  return out;
}

/** What one file descriptor of a process points to, or null when it is closed. */
export function fdTarget(pid: number, fd: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return null;
  }
}

export interface TcpEntry {
  localPort: number;
  remotePort: number;
  /** Kernel state number: 1 ESTABLISHED, 4 FIN_WAIT1, 8 CLOSE_WAIT, ... */
  state: number;
  txQueue: number;
  rxQueue: number;
}

export const TCP_STATES: Record<number, string> = {
  1: 'ESTABLISHED',
  2: 'SYN_SENT',
  3: 'SYN_RECV',
  4: 'FIN_WAIT1',
  5: 'FIN_WAIT2',
  6: 'TIME_WAIT',
  7: 'CLOSE',
  8: 'CLOSE_WAIT',
  9: 'LAST_ACK',
  10: 'LISTEN',
  11: 'CLOSING',
};

/** IPv4 loopback TCP sockets of this network namespace (from /proc/net/tcp), read-only. */
export function loopbackTcp(): TcpEntry[] {
  let text: string;
  try {
    text = readFileSync('/proc/net/tcp', 'utf8');
  } catch {
    return [];
  }
  const out: TcpEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5) continue;
    const [lip, lport] = f[1]!.split(':');
    const [rip, rport] = f[2]!.split(':');
    if (lip !== '0100007F' || rip !== '0100007F') continue;
    const [tx, rx] = f[4]!.split(':');
    out.push({
      localPort: parseInt(lport!, 16),
      remotePort: parseInt(rport!, 16),
      state: parseInt(f[3]!, 16),
      txQueue: parseInt(tx!, 16),
      rxQueue: parseInt(rx!, 16),
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The server as a child process

export interface ServerChild {
  pid: number;
  url: string;
  wsUrl: string;
  startMs: number;
  logPath: string;
  exited(): boolean;
  stop(): Promise<{ code: number | null; signal: string | null; ms: number }>;
}

/**
 * Starts `node dist/src/server.js --config <file>` and resolves once it logs that it is
 * listening. Its stdout/stderr (pino JSON) go to `logPath`.
 */
export async function startServer(opts: {
  root: string;
  configPath: string;
  env: NodeJS.ProcessEnv;
  logPath: string;
  timeoutMs: number;
  nodeArgs?: readonly string[];
}): Promise<ServerChild> {
  const entry = join(opts.root, 'dist', 'src', 'server.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` first`);
  const t0 = now();
  const child: ChildProcess = spawn(process.execPath, [...(opts.nodeArgs ?? []), entry, '--config', opts.configPath], {
    cwd: opts.root,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error('could not spawn the server');
  const pid = child.pid;
  const log: WriteStream = createWriteStream(opts.logPath);
  let exit: { code: number | null; signal: string | null } | null = null;
  const exitedP = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve();
    }),
  );
  let tail = '';
  const url = await new Promise<string>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`server did not listen within ${opts.timeoutMs} ms; log: ${opts.logPath}`)), opts.timeoutMs);
    child.stdout!.on('data', (d: Buffer) => {
      log.write(d);
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      }
    });
    child.stderr!.on('data', (d: Buffer) => {
      log.write(d);
      tail = (tail + d.toString()).slice(-2000);
    });
    void exitedP.then(() => {
      clearTimeout(timer);
      reject(new Error(`server exited (${JSON.stringify(exit)}) before listening: ${tail.trim() || `see ${opts.logPath}`}`));
    });
  });
  const startMs = now() - t0;
  return {
    pid,
    url,
    wsUrl: url.replace(/^http:/, 'ws:'),
    startMs,
    logPath: opts.logPath,
    exited: () => exit !== null,
    async stop() {
      const t = now();
      if (exit === null) {
        process.kill(pid, 'SIGTERM');
        const killer = setTimeout(() => {
          if (exit === null) process.kill(pid, 'SIGKILL');
        }, 15_000);
        await exitedP;
        clearTimeout(killer);
      }
      await new Promise<void>((r) => log.end(() => r()));
      const e = exit as { code: number | null; signal: string | null } | null;
      return { code: e?.code ?? null, signal: e?.signal ?? null, ms: now() - t };
    },
  };
}

export function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

// ---------------------------------------------------------------------------------------------
// HTTP and WebSocket clients (127.0.0.1 only)

export interface TaskRecord {
  id: string;
  status: string;
  image: { name: string };
  exitCode: number | null;
  reason: string | null;
  durationMs: number | null;
  output: { stdoutBytes: number; stderrBytes: number; truncated: boolean };
}

export async function submit(server: ServerChild, command: string, timeoutSeconds: number, extra: Record<string, unknown> = {}): Promise<TaskRecord> {
  const res = await fetch(`${server.url}/v1/tasks`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ command, timeoutSeconds, ...extra }),
  });
  const body = (await res.json()) as TaskRecord;
  if (res.status !== 202) throw new Error(`POST /v1/tasks answered ${res.status}: ${JSON.stringify(body)}`);
  return body;
}

export async function getTask(server: ServerChild, id: string): Promise<TaskRecord> {
  const res = await fetch(`${server.url}/v1/tasks/${id}`);
  if (res.status !== 200) throw new Error(`GET /v1/tasks/${id} answered ${res.status}`);
  return (await res.json()) as TaskRecord;
}

export interface Frame {
  type: string;
  seq: number;
  data?: string;
  status?: string;
  exitCode?: number | null;
  droppedBytes?: number;
  stream?: string;
}

/**
 * One subscriber's view of the stream. Times are ms since the task's submit. A reconnecting
 * subscriber behaves like a correct client: closed with 4008 before the exit frame, it
 * reconnects with ?after=<last seq> and keeps counting.
 */
export class Subscriber {
  ws: WebSocket;
  frames = 0;
  framesWhilePaused = 0;
  framesAfterResume = 0;
  stdoutBytes = 0;
  /** The first 4 KiB of stdout text. */
  text = '';
  lastSeq = 0;
  seqErrors = 0;
  firstStdoutAt: number | null = null;
  gap: Frame | null = null;
  exit: Frame | null = null;
  exitAt: number | null = null;
  closeCode: number | null = null;
  closeReason = '';
  closedAt: number | null = null;
  /** Closes of earlier connections that were followed by a reconnect. */
  readonly reconnects: { code: number; at: number; afterSeq: number }[] = [];
  error: string | null = null;
  paused = false;
  resumed = false;
  localPort: number | null = null;
  readonly opened: Promise<void>;
  readonly closed: Promise<void>;
  readonly exited: Promise<void>;
  private onOpen!: () => void;
  private onOpenError!: (err: Error) => void;
  private onClosed!: () => void;
  private onExit!: () => void;

  constructor(
    private readonly url: string,
    private readonly t0: number,
    private readonly stall: boolean,
    private readonly reconnect: boolean,
    private readonly maxReconnects = 100,
  ) {
    this.opened = new Promise((resolve, reject) => {
      this.onOpen = resolve;
      this.onOpenError = reject;
    });
    this.closed = new Promise((r) => (this.onClosed = r));
    // Resolves on the exit frame, or on the final close without one.
    this.exited = new Promise((r) => (this.onExit = r));
    this.ws = this.connect(0);
  }

  private connect(afterSeq: number): WebSocket {
    const ws = new WebSocket(afterSeq > 0 ? `${this.url}?after=${afterSeq}` : this.url, { perMessageDeflate: false });
    ws.once('open', () => {
      const sock = this.rawSocket();
      this.localPort = sock.localPort ?? null;
      if (this.stall) {
        // Stop reading: the kernel buffers fill, then the server's send buffer backs up.
        sock.pause();
        this.paused = true;
      }
      this.onOpen();
    });
    ws.once('error', (err) => this.onOpenError(err));
    ws.on('error', (err) => (this.error = err.message));
    ws.on('message', (raw) => this.frame(raw.toString()));
    ws.once('close', (code, reason) => {
      const at = now() - this.t0;
      if (this.reconnect && !this.exit && code === 4008 && this.reconnects.length < this.maxReconnects) {
        this.reconnects.push({ code, at, afterSeq: this.lastSeq });
        this.ws = this.connect(this.lastSeq);
        return;
      }
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.closedAt = at;
      this.onExit();
      this.onClosed();
    });
    return ws;
  }

  private rawSocket(): Socket {
    return (this.ws as unknown as { _socket: Socket })._socket;
  }

  resume(): void {
    this.resumed = true;
    this.paused = false;
    this.rawSocket().resume();
  }

  private frame(text: string): void {
    this.frames++;
    if (this.paused) this.framesWhilePaused++;
    if (this.resumed) this.framesAfterResume++;
    let f: Frame;
    try {
      f = JSON.parse(text) as Frame;
    } catch {
      this.seqErrors++;
      return;
    }
    if (typeof f.seq === 'number') {
      if (f.seq !== this.lastSeq + 1) this.seqErrors++;
      this.lastSeq = f.seq;
    }
    if (f.type === 'stdout' && typeof f.data === 'string') {
      this.firstStdoutAt ??= now() - this.t0;
      this.stdoutBytes += Buffer.byteLength(f.data);
      if (this.text.length < 4096) this.text += f.data.slice(0, 4096 - this.text.length);
    } else if (f.type === 'gap') {
      this.gap = f;
    } else if (f.type === 'exit') {
      this.exit = f;
      this.exitAt = now() - this.t0;
      this.onExit();
    }
  }
}

export function within<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Raw engine

export interface RawRun {
  ms: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command with stdout discarded (or captured, when small), timing spawn → exit. */
export function timedRun(cmd: string, args: readonly string[], env: NodeJS.ProcessEnv, captureStdout: boolean, timeoutMs: number): Promise<RawRun> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const child = spawn(cmd, args, { env, stdio: ['ignore', captureStdout ? 'pipe' : 'ignore', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout = (stdout + d.toString()).slice(-4000);
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const timer = setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ ms: now() - t0, code, stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Numbers and tables

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const fmtMiB = (bytes: number | null | undefined, digits = 1) => (bytes == null || !Number.isFinite(bytes) ? 'n/a' : `${(bytes / MiB).toFixed(digits)} MiB`);
export const fmtMs = (ms: number | null | undefined) => (ms == null || !Number.isFinite(ms) ? 'n/a' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);
export const fmtRatio = (a: number | null | undefined, b: number | null | undefined) =>
  a == null || b == null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? 'n/a' : `${(a / b).toFixed(2)}x`;

/** A plain-text table with a header row; the first column is left-aligned, others right-aligned. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], leftCols = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i < leftCols ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Figures

export interface Figure {
  median: number;
  min: number;
  max: number;
  n: number;
  unit: string;
}

/** Median, min and max of the values of one figure over its rounds. */
export function summarize(xs: readonly number[], unit: string): Figure {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs), n: xs.length, unit };
}

/** Runs `a` and `b` once per round, alternating which goes first, and collects both. */
export async function interleave<A, B>(rounds: number, a: () => Promise<A>, b: () => Promise<B>): Promise<{ a: A[]; b: B[] }> {
  const out = { a: [] as A[], b: [] as B[] };
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      out.a.push(await a());
      out.b.push(await b());
    } else {
      out.b.push(await b());
      out.a.push(await a());
    }
  }
  return out;
}

/** Resets the kernel's peak-RSS counter (VmHWM) of a process; false when not permitted. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** utime + stime (+ cutime + cstime: children it reaped) of a process, in ms. */
export function procTreeCpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 10;
  } catch {
    return null;
  }
}

/** Median VmRSS of a process over `n` samples 50 ms apart. */
export async function settledRss(pid: number, n = 10): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    xs.push(procMemory(pid)?.rss ?? Number.NaN);
    await sleep(50);
  }
  return median(xs);
}

/** Samples a process's VmRSS every 25 ms (and resets its VmHWM) until stopped; returns the peak. */
export function peakRssWatch(pid: number): () => number {
  resetPeakRss(pid);
  let peak = procMemory(pid)?.rss ?? 0;
  const timer = setInterval(() => (peak = Math.max(peak, procMemory(pid)?.rss ?? 0)), 25);
  return () => {
    clearInterval(timer);
    const m = procMemory(pid);
    return Math.max(peak, m?.rss ?? 0, m?.hwm ?? 0);
  };
}

/** One task through REST + WebSocket: submit → first stdout frame, and submit → exit frame. */
export async function serverRun(
  server: ServerChild,
  command: string,
  timeoutSeconds = 120,
  extra: Record<string, unknown> = {},
): Promise<{ firstByteMs: number | null; exitMs: number; task: TaskRecord; status: string }> {
  const t0 = now();
  const task = await submit(server, command, timeoutSeconds, extra);
  const sub = new Subscriber(`${server.wsUrl}/v1/tasks/${task.id}/stream`, t0, false, true);
  await sub.opened;
  if ((await within(sub.exited, timeoutSeconds * 1000 + 30_000)) === 'timeout' || !sub.exit) throw new Error(`task ${task.id} (${command}) gave no exit frame`);
  if (sub.exit.status !== 'succeeded') throw new Error(`task ${task.id} (${command}) ended ${sub.exit.status}`);
  sub.ws.close();
  return { firstByteMs: sub.firstStdoutAt, exitMs: sub.exitAt!, task, status: sub.exit.status };
}

/** Runs `count` calls of `fn` with at most `concurrency` in flight; returns tasks per second. */
export async function ratePerSecond(count: number, concurrency: number, fn: () => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = now();
  const worker = async () => {
    while (next < count) {
      next++;
      await fn();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return count / ((now() - t0) / 1000);
}
