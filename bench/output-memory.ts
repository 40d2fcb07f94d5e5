/**
 * Output-memory benchmark: does the server's memory stay flat while a task floods stdout and one
 * WebSocket subscriber stops reading? And what does the server cost against the raw engine?
 *
 *   npm run build && npm run bench -- output-memory [--mib 300] [--runs 10] [--socket PATH|owned]
 *
 * Starts the real server as a child process (temporary data directory, 127.0.0.1, a free port),
 * runs one task that writes --mib MiB to stdout with a normal and a stalled subscriber attached,
 * samples the server's VmRSS every 100 ms, then compares against `podman run` directly.
 * A benchmark, not a test: it prints figures and exits 0 unless something needed for the
 * figures failed (server did not start, task did not finish).
 * See bench/README.md for what each figure means.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  fmtMiB,
  fmtMs,
  fdsOpenOn,
  getTask,
  fdTarget,
  fmtRatio,
  loopbackTcp,
  median,
  MiB,
  now,
  parseFlags,
  procCpuSeconds,
  procMemory,
  repoRoot,
  sleep,
  startServer,
  submit,
  Subscriber,
  table,
  TCP_STATES,
  timedRun,
  usage,
  UsageError,
  within,
  type FlagSpec,
  type ServerChild,
  type TaskRecord,
} from './lib.js';

const FLAGS: readonly FlagSpec[] = [
  { name: 'mib', kind: 'int', min: 1, max: 4096, help: 'MiB the big task writes to stdout (default 300)' },
  { name: 'runs', kind: 'int', min: 1, max: 100, help: '`echo hi` runs per path for the latency part (default 10)' },
  {
    name: 'socket',
    kind: 'string',
    help: 'Podman API socket (/path or unix:///path), or "owned" to let the server start its own. Default: $CONTAINER_HOST, else /run/sbx-dev/podman.sock if it exists, else owned',
  },
  {
    name: 'data',
    kind: 'string',
    choices: ['yes', 'random', 'zeros'],
    help: 'what the task writes: "yes" lines (default; cheap producer), "random" (urandom | base64) or "zeros" (NUL bytes: 6 bytes of JSON each in frames)',
  },
  { name: 'head-mib', kind: 'number', min: 0.001, max: 1024, help: 'output.headBytes in MiB (default: server default, 8)' },
  { name: 'tail-mib', kind: 'number', min: 0, max: 256, help: 'output.tailBytes in MiB (default: server default, 8)' },
  { name: 'backlog-mib', kind: 'number', min: 0.0625, max: 1024, help: 'output.subscriberBacklogBytes in MiB (default: server default, 16)' },
  { name: 'repeat', kind: 'int', min: 1, max: 10, help: 'run the big task this many times in the same server, to tell a plateau from a leak (default 1)' },
  { name: 'node-args', kind: 'string', help: 'extra node flags for the server child, space-separated (e.g. "--trace-gc"; output goes to the server log)' },
  {
    name: 'stall-grace',
    kind: 'number',
    min: 0,
    max: 60,
    help: 'seconds to keep the stalled subscriber paused after the exit frame, for the server to give up on it (default 5)',
  },
  { name: 'skip-raw', kind: 'bool', help: 'skip the raw `podman run` comparison' },
  { name: 'keep', kind: 'bool', help: 'keep the temporary directory (config, server log, data dir)' },
];

const DEFAULT_SOCKET = '/run/sbx-dev/podman.sock';
const SERVER_DEFAULTS = { headBytes: 8 * MiB, tailBytes: 8 * MiB, backlogBytes: 16 * MiB };
/** Whole run must stay well under 3 minutes with defaults; this is the hard stop (longer for big --mib). */
const watchdogMs = (mib: number) => 170_000 + Math.max(0, mib - 300) * 100;
const SAMPLE_MS = 100;
const LINE = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-'; // + '\n' = 64 bytes

type DataKind = 'yes' | 'random' | 'zeros';

interface Options {
  mib: number;
  runs: number;
  socket: string | null; // null: owned
  socketSource: string;
  data: DataKind;
  headBytes: number | null;
  tailBytes: number | null;
  backlogBytes: number | null;
  nodeArgs: string[];
  repeat: number;
  stallGraceMs: number;
  skipRaw: boolean;
  keep: boolean;
}

function options(argv: readonly string[]): Options {
  const f = parseFlags(argv, FLAGS);
  let socket: string | null;
  let socketSource: string;
  const flag = f.get('socket') as string | undefined;
  if (flag !== undefined) {
    socket = flag === 'owned' ? null : flag;
    socketSource = '--socket';
  } else if (process.env.CONTAINER_HOST) {
    socket = process.env.CONTAINER_HOST;
    socketSource = 'CONTAINER_HOST';
  } else if (existsSync(DEFAULT_SOCKET)) {
    socket = DEFAULT_SOCKET;
    socketSource = 'default';
  } else {
    socket = null;
    socketSource = 'none found';
  }
  if (socket !== null) {
    socket = socket.replace(/^unix:\/\//, '');
    if (!socket.startsWith('/')) throw new UsageError(`--socket must be a unix socket path or unix:///path, got "${socket}"`);
  }
  const mibBytes = (name: string) => (f.has(name) ? Math.round((f.get(name) as number) * MiB) : null);
  return {
    mib: (f.get('mib') as number | undefined) ?? 300,
    runs: (f.get('runs') as number | undefined) ?? 10,
    socket,
    socketSource,
    data: ((f.get('data') as string | undefined) ?? 'yes') as DataKind,
    headBytes: mibBytes('head-mib'),
    tailBytes: mibBytes('tail-mib'),
    backlogBytes: mibBytes('backlog-mib'),
    nodeArgs: ((f.get('node-args') as string | undefined) ?? '').split(/\s+/).filter(Boolean),
    repeat: (f.get('repeat') as number | undefined) ?? 1,
    stallGraceMs: ((f.get('stall-grace') as number | undefined) ?? 5) * 1000,
    skipRaw: f.get('skip-raw') === true,
    keep: f.get('keep') === true,
  };
}

/** A command that writes exactly `bytes` bytes of text to stdout, fast. */
function floodCommand(bytes: number, data: DataKind): string {
  if (data === 'yes') return `yes ${LINE} | head -c ${bytes}`;
  if (data === 'zeros') return `head -c ${bytes} /dev/zero`;
  return `head -c ${Math.ceil((bytes * 3) / 4)} /dev/urandom | base64 | head -c ${bytes}`;
}

/** Submit → exit frame for one small command, through the server. */
async function serverLatency(server: ServerChild, command: string): Promise<{ acceptMs: number; exitMs: number; output: string; status: string }> {
  const t0 = now();
  const task = await submit(server, command, 60);
  const acceptMs = now() - t0;
  const sub = new Subscriber(`${server.wsUrl}/v1/tasks/${task.id}/stream`, t0, false, true);
  await sub.opened;
  if ((await within(sub.exited, 30_000)) === 'timeout' || !sub.exit) throw new Error(`task ${task.id} (${command}) gave no exit frame within 30 s`);
  await within(sub.closed, 5_000);
  return { acceptMs, exitMs: sub.exitAt!, output: sub.text, status: sub.exit.status ?? '?' };
}

// ---------------------------------------------------------------------------------------------
// RSS sampling

interface Sample {
  t: number; // ms since the sampler started
  rss: number;
}

class Sampler {
  readonly samples: Sample[] = [];
  private timer: NodeJS.Timeout | null = null;
  private t0 = 0;
  /** Stalled connection, watched through /proc/net/tcp. */
  watch: { serverPort: number; clientPort: number } | null = null;
  serverSideEstablishedSeen = false;
  serverSideDroppedAt: number | null = null;
  /** The server's file descriptor of the stalled subscriber's log cursor, and when it closed. */
  cursorWatch: { fd: number; path: string } | null = null;
  cursorClosedAt: number | null = null;
  serverSideStateAtDrop = '';
  maxServerTxQueue = 0;
  maxClientRxQueue = 0;

  constructor(private readonly pid: number) {}

  start(t0: number): void {
    this.t0 = t0;
    this.tick();
    this.timer = setInterval(() => this.tick(), SAMPLE_MS);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(): void {
    const t = now() - this.t0;
    const m = procMemory(this.pid);
    if (m) this.samples.push({ t, rss: m.rss });
    const c = this.cursorWatch;
    if (c && this.cursorClosedAt === null && fdTarget(this.pid, c.fd) !== c.path) this.cursorClosedAt = t;
    const w = this.watch;
    if (w && this.serverSideDroppedAt === null) {
      const tcp = loopbackTcp();
      const srv = tcp.find((e) => e.localPort === w.serverPort && e.remotePort === w.clientPort);
      const cli = tcp.find((e) => e.localPort === w.clientPort && e.remotePort === w.serverPort);
      if (cli) this.maxClientRxQueue = Math.max(this.maxClientRxQueue, cli.rxQueue);
      if (srv) this.maxServerTxQueue = Math.max(this.maxServerTxQueue, srv.txQueue);
      if (srv && srv.state === 1) this.serverSideEstablishedSeen = true;
      else if (this.serverSideEstablishedSeen) {
        this.serverSideDroppedAt = t;
        this.serverSideStateAtDrop = srv ? (TCP_STATES[srv.state] ?? String(srv.state)) : 'gone';
      }
    }
  }

  peak(from = 0, to = Number.POSITIVE_INFINITY): Sample | null {
    let best: Sample | null = null;
    for (const s of this.samples) if (s.t >= from && s.t <= to && (!best || s.rss > best.rss)) best = s;
    return best;
  }
}

/** Median VmRSS over `n` samples `SAMPLE_MS` apart. */
async function settledRss(pid: number, n = 10): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const m = procMemory(pid);
    if (m) xs.push(m.rss);
    await sleep(SAMPLE_MS);
  }
  return median(xs);
}

// ---------------------------------------------------------------------------------------------
// The big task

interface BigResult {
  command: string;
  taskId: string;
  image: string;
  baselineRss: number;
  peak: Sample | null;
  afterRss: number;
  hwmBefore: number;
  hwmAfter: number;
  cpuSeconds: number | null;
  durationMs: number;
  durationSource: string;
  normal: Subscriber;
  stalled: Subscriber;
  sampler: Sampler;
  stalledResolvedBy: string;
  record: TaskRecord;
  logBytes: number | null;
  rssAtExit: number | null;
}

async function bigTask(server: ServerChild, opts: Options, dataDir: string, warmUp: boolean): Promise<BigResult> {
  const bytes = opts.mib * MiB;
  const command = floodCommand(bytes, opts.data);
  const serverPort = Number(new URL(server.url).port);

  // Baseline: after a warm-up task (so the code paths are loaded), once things have settled.
  if (warmUp) await serverLatency(server, 'echo warm-up');
  await sleep(1000);
  const baselineRss = await settledRss(server.pid);
  const hwmBefore = procMemory(server.pid)?.hwm ?? 0;
  const cpuBefore = procCpuSeconds(server.pid);

  const sampler = new Sampler(server.pid);
  const t0 = now();
  sampler.start(t0);
  const task = await submit(server, command, 150);
  const streamUrl = `${server.wsUrl}/v1/tasks/${task.id}/stream`;
  const framesPath = join(dataDir, 'tasks', task.id, 'frames.ndjson');
  // The stalled subscriber connects first, so that the one new descriptor the server opens on the
  // task's log is its cursor: when that closes while the client is still paused, the server gave up.
  const fdsBefore = new Set(fdsOpenOn(server.pid, framesPath));
  const stalled = new Subscriber(streamUrl, t0, true, false);
  await stalled.opened;
  for (const deadline = now() + 1000; now() < deadline && !sampler.cursorWatch; await sleep(5)) {
    const fd = fdsOpenOn(server.pid, framesPath).find((x) => !fdsBefore.has(x));
    if (fd !== undefined) sampler.cursorWatch = { fd, path: framesPath };
  }
  const normal = new Subscriber(streamUrl, t0, false, true);
  await normal.opened;
  if (stalled.localPort !== null) sampler.watch = { serverPort, clientPort: stalled.localPort };

  const exitBudget = 120_000;
  if ((await within(normal.exited, exitBudget)) === 'timeout') {
    throw new Error(`the normal subscriber saw no exit frame within ${exitBudget / 1000} s`);
  }
  let durationMs: number;
  let durationSource: string;
  if (normal.exit) {
    durationMs = normal.exitAt!;
    durationSource = 'exit frame on the normal subscriber';
  } else {
    // It was closed without one (and did not or could not reconnect): time the task record.
    const deadline = now() + exitBudget;
    for (;;) {
      const rec = await getTask(server, task.id);
      if (!['queued', 'running'].includes(rec.status)) break;
      if (now() > deadline) throw new Error(`task ${task.id} still ${rec.status} after ${exitBudget / 1000} s`);
      await sleep(50);
    }
    durationMs = now() - t0;
    durationSource = `task record turned terminal (normal subscriber closed ${normal.closeCode} without an exit frame)`;
  }
  const rssAtExit = procMemory(server.pid)?.rss ?? null;
  await within(normal.closed, 5_000);
  const cpuAfter = procCpuSeconds(server.pid);

  // The stalled subscriber: give the server time to give up on it (its cursor closes), then resume
  // reading so that whatever the server queued, a 4008 close frame included, arrives.
  let stalledResolvedBy: string;
  const gone = () => sampler.cursorClosedAt !== null || sampler.serverSideDroppedAt !== null || stalled.closeCode !== null;
  const graceEnd = now() + opts.stallGraceMs;
  while (!gone() && now() < graceEnd) await sleep(20);
  await sleep(150); // one more sample
  stalledResolvedBy = gone()
    ? `server was done with it (cursor closed or connection dropped); the bench resumed reading at t=${fmtMs(now() - t0)}`
    : `still served ${opts.stallGraceMs / 1000} s after the exit frame; the bench resumed reading at t=${fmtMs(now() - t0)}`;
  sampler.watch = null; // from here on a close is the bench's doing
  sampler.cursorWatch = null;
  stalled.resume();
  if ((await within(stalled.closed, 15_000)) === 'timeout') {
    stalled.ws.terminate();
    stalledResolvedBy += '; did not close within 15 s of resuming (terminated by the bench)';
    await within(stalled.closed, 2_000);
  }

  // After: everything closed and a moment to settle.
  await sleep(2000);
  const afterRss = await settledRss(server.pid);
  sampler.stop();
  const hwmAfter = procMemory(server.pid)?.hwm ?? 0;
  const record = await getTask(server, task.id);
  let logBytes: number | null = null;
  try {
    logBytes = statSync(join(dataDir, 'tasks', task.id, 'frames.ndjson')).size;
  } catch {
    /* layout of the data directory changed: report n/a */
  }
  return {
    command,
    taskId: task.id,
    image: task.image.name,
    baselineRss,
    peak: sampler.peak(),
    afterRss,
    hwmBefore,
    hwmAfter,
    cpuSeconds: cpuBefore !== null && cpuAfter !== null ? cpuAfter - cpuBefore : null,
    durationMs,
    durationSource,
    normal,
    stalled,
    sampler,
    stalledResolvedBy,
    record,
    logBytes,
    rssAtExit,
  };
}

// ---------------------------------------------------------------------------------------------
// Raw engine

interface RawResults {
  bigK8s: { ms: number; code: number | null } | null;
  bigNone: { ms: number; code: number | null } | null;
  echo: number[];
  error: string | null;
}

async function rawEngine(root: string, image: string, command: string, runs: number): Promise<RawResults> {
  const env = { ...process.env, CONTAINERS_CONF: join(root, 'deploy', 'containers.conf') };
  const base = ['--runtime', 'runc', 'run', '--rm', '--network', 'none'];
  const out: RawResults = { bigK8s: null, bigNone: null, echo: [], error: null };
  try {
    const big = async (extra: string[]) => {
      const r = await timedRun('podman', [...base, ...extra, image, '/bin/sh', '-c', command], env, false, 120_000);
      if (r.code !== 0) throw new Error(`podman run exited ${r.code}: ${r.stderr.trim()}`);
      return { ms: r.ms, code: r.code };
    };
    out.bigK8s = await big([]);
    out.bigNone = await big(['--log-driver', 'none']);
    for (let i = 0; i <= runs; i++) {
      const r = await timedRun('podman', [...base, image, '/bin/sh', '-c', 'echo hi'], env, true, 30_000);
      if (r.code !== 0 || r.stdout.trim() !== 'hi') throw new Error(`podman run echo hi: exit ${r.code}, stdout ${JSON.stringify(r.stdout)}: ${r.stderr.trim()}`);
      if (i > 0) out.echo.push(r.ms); // the first run warms up
    }
  } catch (err) {
    out.error = (err as Error).message;
  }
  return out;
}

function podmanVersion(): string {
  try {
    return execFileSync('podman', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'podman: unknown';
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = options(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      const msg = err.message ? `output-memory: ${err.message}\n\n` : '';
      process.stderr.write(`${msg}usage: npm run bench -- output-memory [flags]\n${usage(FLAGS)}\n`);
      return err.message ? 2 : 0;
    }
    throw err;
  }
  const root = repoRoot();
  const tmp = mkdtempSync(join(tmpdir(), 'sbx-bench-'));
  const dataDir = join(tmp, 'data');
  const configPath = join(tmp, 'sandboxshift.yaml');
  const output: Record<string, number> = {};
  if (opts.headBytes !== null) output.headBytes = opts.headBytes;
  if (opts.tailBytes !== null) output.tailBytes = opts.tailBytes;
  if (opts.backlogBytes !== null) output.subscriberBacklogBytes = opts.backlogBytes;
  // JSON is YAML.
  writeFileSync(
    configPath,
    `${JSON.stringify({ dataDir, listen: { host: '127.0.0.1', port: 0 }, engine: { socket: opts.socket }, output }, null, 2)}\n`,
  );
  const env = { ...process.env };
  if (opts.socket === null) {
    delete env.CONTAINER_HOST;
    delete env.DOCKER_HOST;
  }
  const headBytes = opts.headBytes ?? SERVER_DEFAULTS.headBytes;
  const tailBytes = opts.tailBytes ?? SERVER_DEFAULTS.tailBytes;
  const backlogBytes = opts.backlogBytes ?? SERVER_DEFAULTS.backlogBytes;

  const started = new Date();
  const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(' ');
  const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);
  let server: ServerChild | null = null;
  const watchdogAfter = watchdogMs(opts.mib);
  const watchdog = setTimeout(() => {
    process.stderr.write(`output-memory: watchdog: still running after ${watchdogAfter / 1000} s; stopping the server and giving up (temp dir ${tmp})\n`);
    if (server && !server.exited()) process.kill(server.pid, 'SIGKILL');
    process.exit(1);
  }, watchdogAfter);
  watchdog.unref();
  const onSignal = () => {
    if (server && !server.exited()) process.kill(server.pid, 'SIGTERM');
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const bigs: BigResult[] = [];
  let latency: { acceptMs: number; exitMs: number }[] = [];
  let stopInfo: { code: number | null; signal: string | null; ms: number };
  try {
    say(`starting the server (socket: ${opts.socket ?? 'owned by the server'}; temp dir ${tmp})`);
    server = await startServer({ root, configPath, env, nodeArgs: opts.nodeArgs, logPath: join(tmp, 'server.log'), timeoutMs: 60_000 });
    say(`server pid ${server.pid} listening at ${server.url} after ${fmtMs(server.startMs)}`);
    say(`big task: ${opts.mib} MiB of stdout, one normal and one stalled subscriber`);
    for (let i = 0; i < opts.repeat; i++) {
      if (i > 0) say(`big task again (${i + 1} of ${opts.repeat})`);
      bigs.push(await bigTask(server, opts, dataDir, i === 0));
    }
    say(`server latency: ${opts.runs} x echo hi`);
    for (let i = 0; i < opts.runs; i++) {
      const r = await serverLatency(server, 'echo hi');
      if (r.output !== 'hi\n' || r.status !== 'succeeded') throw new Error(`echo hi through the server: status ${r.status}, output ${JSON.stringify(r.output)}`);
      latency.push(r);
    }
  } catch (err) {
    process.stderr.write(`output-memory: kept ${tmp} for inspection (server.log, sandboxshift.yaml, data/)\n`);
    throw err;
  } finally {
    if (server) {
      stopInfo = await server.stop();
      say(`server stopped (${stopInfo.signal ?? `exit ${stopInfo.code}`}) in ${fmtMs(stopInfo.ms)}`);
    }
  }

  let raw: RawResults | null = null;
  if (!opts.skipRaw) {
    say(`raw engine: podman run (${opts.mib} MiB, twice) and ${opts.runs} x echo hi`);
    raw = await rawEngine(root, bigs[0]!.image, bigs[0]!.command, opts.runs);
    if (raw.error) say(`raw engine failed: ${raw.error}`);
  }
  clearTimeout(watchdog);

  // ------------------------------------------------------------------------------ report
  const b = bigs[0]!;
  const n = b.normal;
  const st = b.stalled;
  const produced = b.record.output.stdoutBytes;
  const mibps = (bytesN: number, ms: number | null | undefined) => (ms ? bytesN / MiB / (ms / 1000) : Number.NaN);
  const serverMibps = mibps(produced, b.durationMs);
  const peakDelta = b.peak ? b.peak.rss - b.baselineRss : Number.NaN;
  const lines: string[] = [];
  const p = (s = '') => lines.push(s);

  p(`SandboxShift output-memory benchmark — ${started.toISOString()}`);
  p(`host ${hostname()}: ${cpus().length} cores, ${fmtMiB(totalmem(), 0)} RAM, Linux ${release()}, node ${process.version}, ${podmanVersion()}`);
  p(`load average at start: ${loadAtStart} (other work on the machine skews every figure below)`);
  p(`engine socket: ${opts.socket ?? 'owned by the server'} (${opts.socketSource}); image ${b.image}`);
  p(`output caps: head ${fmtMiB(headBytes)} + tail ${fmtMiB(tailBytes)} per stream; subscriber backlog limit ${fmtMiB(backlogBytes)}`);
  p(`command: ${b.command}`);
  p();
  p('Server process memory (VmRSS of the server child, sampled every 100 ms)');
  p(
    table(
      ['figure', 'value', 'note'],
      [
        ['baseline RSS', fmtMiB(b.baselineRss), 'idle, after one warm-up task (median of 10 samples)'],
        ['peak RSS during the task', fmtMiB(b.peak?.rss), b.peak ? `at t=${fmtMs(b.peak.t)} after submit; ${b.sampler.samples.length} samples` : ''],
        ['RSS when exit frame arrived', fmtMiB(b.rssAtExit), ''],
        ['RSS after', fmtMiB(b.afterRss), '2 s after both subscribers closed (median of 10)'],
        ['peak - baseline', fmtMiB(peakDelta), `${(peakDelta / Math.max(n.stdoutBytes, 1)).toFixed(1)}x the ${fmtMiB(n.stdoutBytes)} kept and sent (head + tail); ${((peakDelta / Math.max(produced, 1)) * 100).toFixed(1)}% of the bytes produced`],
        ['after - baseline', fmtMiB(b.afterRss - b.baselineRss), ''],
        ['VmHWM before -> after', `${fmtMiB(b.hwmBefore)} -> ${fmtMiB(b.hwmAfter)}`, 'kernel high-water mark (catches spikes between samples)'],
        ['server CPU during task', b.cpuSeconds === null ? 'n/a' : `${b.cpuSeconds.toFixed(2)} s`, b.cpuSeconds ? `${((b.cpuSeconds * 1000) / (produced / MiB)).toFixed(1)} ms per MiB produced` : ''],
      ],
      3,
    ).replace(/^/gm, '  '),
  );
  if (bigs.length > 1) {
    p();
    p(`Repeats (same server, ${bigs.length} big tasks one after another)`);
    p(
      table(
        ['run', 'baseline', 'peak', 'after', 'peak - first baseline', 'VmHWM', 'duration'],
        bigs.map((r, i) => [
          String(i + 1),
          fmtMiB(r.baselineRss),
          fmtMiB(r.peak?.rss),
          fmtMiB(r.afterRss),
          fmtMiB((r.peak?.rss ?? Number.NaN) - b.baselineRss),
          fmtMiB(r.hwmAfter),
          fmtMs(r.durationMs),
        ]),
      ).replace(/^/gm, '  '),
    );
  }
  p();
  p('Big task');
  p(
    table(
      ['figure', 'value'],
      [
        ['bytes produced (record stdoutBytes)', `${produced} (${fmtMiB(produced)})`],
        ['expected', `${opts.mib * MiB}`],
        ['status / exit code', `${b.record.status} / ${b.record.exitCode}`],
        ['output.truncated', String(b.record.output.truncated)],
        ['stderrBytes', String(b.record.output.stderrBytes)],
        ['duration submit -> exit', `${fmtMs(b.durationMs)} (${b.durationSource})`],
        ['first stdout frame after submit', fmtMs(n.firstStdoutAt)],
        ['server-recorded durationMs', fmtMs(b.record.durationMs)],
        ['throughput (produced / duration)', `${serverMibps.toFixed(1)} MiB/s`],
        ['frames log on disk', b.logBytes === null ? 'n/a' : `${fmtMiB(b.logBytes, 2)} (${b.logBytes} bytes)`],
      ],
      2,
    ).replace(/^/gm, '  '),
  );
  p();
  const stalledVerdict = (() => {
    const cursorAt = b.sampler.cursorClosedAt;
    const dropped =
      b.sampler.serverSideDroppedAt !== null ? `server dropped the TCP connection (${b.sampler.serverSideStateAtDrop}) at t=${fmtMs(b.sampler.serverSideDroppedAt)}` : null;
    if (st.closeCode === 4008) {
      return `yes, 4008 (received after resuming)${cursorAt !== null ? `; server stopped serving it at t=${fmtMs(cursorAt)} (its log cursor closed)` : ''}${dropped ? `; ${dropped}` : ''}`;
    }
    if (st.closeCode === 1000 && st.exit) {
      return cursorAt !== null
        ? `no: the whole log fit in the socket buffers (server done with it at t=${fmtMs(cursorAt)}); close 1000 after resuming`
        : 'no: still served when resumed; it then read to the end (close 1000)';
    }
    const parts = [cursorAt !== null ? `server stopped serving it at t=${fmtMs(cursorAt)}` : null, dropped].filter(Boolean).join('; ');
    return `${parts || 'unclear'}; client saw close code ${st.closeCode} and ${st.exit ? 'the' : 'no'} exit frame`;
  })();
  p('Subscribers');
  p(
    table(
      ['figure', 'normal', 'stalled'],
      [
        [
          'reconnects after 4008 (?after=)',
          n.reconnects.length ? `${n.reconnects.length}: ${n.reconnects.slice(0, 4).map((r) => `t=${fmtMs(r.at)} after seq ${r.afterSeq}`).join(', ')}${n.reconnects.length > 4 ? ', ...' : ''}` : '0',
          '- (does not reconnect)',
        ],
        ['frames received', String(n.frames), `${st.frames} (${st.framesWhilePaused} while paused, ${st.framesAfterResume} after resume)`],
        ['last seq / seq errors', `${n.lastSeq} / ${n.seqErrors}`, `${st.lastSeq} / ${st.seqErrors}`],
        ['stdout bytes in frames', `${n.stdoutBytes} (${fmtMiB(n.stdoutBytes, 2)})`, `${st.stdoutBytes} (${fmtMiB(st.stdoutBytes, 2)})`],
        ['gap frame', n.gap ? `yes, droppedBytes ${n.gap.droppedBytes}` : 'no', st.gap ? `yes, droppedBytes ${st.gap.droppedBytes}` : 'no'],
        ['exit frame', n.exit ? `yes, ${n.exit.status} ${n.exit.exitCode}, at t=${fmtMs(n.exitAt)}` : 'no', st.exit ? `yes, at t=${fmtMs(st.exitAt)}` : 'no'],
        ['close code', `${n.closeCode} at t=${fmtMs(n.closedAt)}`, `${st.closeCode} at t=${fmtMs(st.closedAt)}${st.closeReason ? ` "${st.closeReason}"` : ''}`],
        ['closed by the server for backlog', '-', stalledVerdict],
        ['how the stall ended', '-', b.stalledResolvedBy],
        ['kernel queues while stalled (max)', '-', `server send ${fmtMiB(b.sampler.maxServerTxQueue, 2)}, client receive ${fmtMiB(b.sampler.maxClientRxQueue, 2)}`],
      ],
      3,
    ).replace(/^/gm, '  '),
  );
  const accounted = n.gap ? (n.gap.droppedBytes ?? 0) + n.stdoutBytes : n.stdoutBytes;
  p(`  accounting: live+tail bytes in frames + droppedBytes = ${accounted} (${accounted === produced ? 'equals' : 'DIFFERS FROM'} stdoutBytes ${produced})`);
  p();

  const lat = median(latency.map((r) => r.exitMs));
  const latAccept = median(latency.map((r) => r.acceptMs));
  const rng = (xs: number[]) => (xs.length ? `${fmtMs(Math.min(...xs))}..${fmtMs(Math.max(...xs))}` : '');
  p('Server vs raw engine');
  const rawBigK = raw?.bigK8s?.ms;
  const rawBigN = raw?.bigNone?.ms;
  const rawEcho = raw && raw.echo.length ? median(raw.echo) : undefined;
  p(
    table(
      ['figure', 'server', 'raw podman run', 'server/raw', 'raw --log-driver none', 'server/raw'],
      [
        [`${opts.mib} MiB task: wall time`, fmtMs(b.durationMs), fmtMs(rawBigK), fmtRatio(b.durationMs, rawBigK), fmtMs(rawBigN), fmtRatio(b.durationMs, rawBigN)],
        [
          `${opts.mib} MiB task: throughput`,
          `${serverMibps.toFixed(1)} MiB/s`,
          rawBigK ? `${mibps(opts.mib * MiB, rawBigK).toFixed(1)} MiB/s` : 'n/a',
          fmtRatio(serverMibps, mibps(opts.mib * MiB, rawBigK)),
          rawBigN ? `${mibps(opts.mib * MiB, rawBigN).toFixed(1)} MiB/s` : 'n/a',
          fmtRatio(serverMibps, mibps(opts.mib * MiB, rawBigN)),
        ],
        [`echo hi: median of ${opts.runs}`, fmtMs(lat), fmtMs(rawEcho), fmtRatio(lat, rawEcho), '-', '-'],
        ['echo hi: range', rng(latency.map((r) => r.exitMs)), rng(raw?.echo ?? []), '', '', ''],
        ['echo hi: submit -> 202 (median)', fmtMs(latAccept), '-', '', '', ''],
      ],
      1,
    ).replace(/^/gm, '  '),
  );
  if (opts.skipRaw) p('  (raw engine skipped: --skip-raw)');
  else if (raw?.error) p(`  raw engine error: ${raw.error}`);
  p('  server: submit -> exit frame on a WebSocket subscriber. raw: spawn -> exit of');
  p('  `podman --runtime runc run --rm --network none IMAGE /bin/sh -c CMD > /dev/null`, CONTAINERS_CONF=deploy/containers.conf');
  p(`  (its log_driver applies to "raw podman run"). Server start-up to listening: ${fmtMs(server?.startMs)}.`);

  // Sanity (not assertions about performance): the figures above are only meaningful if these hold.
  const problems: string[] = [];
  const findings: string[] = [];
  if (produced !== opts.mib * MiB) problems.push(`stdoutBytes ${produced} != ${opts.mib * MiB}`);
  if (!n.exit) problems.push('normal subscriber saw no exit frame');
  if (n.reconnects.length) findings.push(`normal subscriber (reading as fast as it can) was closed with 4008 ${n.reconnects.length} time(s)`);
  if (n.seqErrors) problems.push(`normal subscriber saw ${n.seqErrors} seq gaps/duplicates`);
  if (b.record.status !== 'succeeded') problems.push(`task status ${b.record.status}`);
  if (findings.length) p(`\nFINDINGS: ${findings.join('; ')}`);
  if (problems.length) p(`\nSANITY PROBLEMS (figures above may be meaningless): ${problems.join('; ')}`);

  process.stdout.write(`${lines.join('\n')}\n`);
  if (opts.keep) {
    writeFileSync(join(tmp, 'rss.csv'), `t_ms,rss_bytes\n${b.sampler.samples.map((s) => `${Math.round(s.t)},${s.rss}`).join('\n')}\n`);
    process.stdout.write(`kept: ${tmp} (server.log, sandboxshift.yaml, rss.csv, data/)\n`);
  }
  else rmSync(tmp, { recursive: true, force: true });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`output-memory: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
