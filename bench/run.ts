/**
 * The benchmark suite: `npm run bench [-- --quick | --smoke] [--out DIR] [--socket PATH] [--profile]`.
 *
 * Starts the real server as a child process (so that its RSS and CPU are its own) on a Podman API
 * service (SANDBOXSHIFT_TEST_SOCKET, --socket, or one it starts itself), and measures `echo hi`
 * latency, throughput, streaming, upload, idle cost and CPU per task, each server figure in
 * rounds interleaved with the raw engine on the same socket. Prints a table and writes
 * <out>/<timestamp>.json and <out>/latest.json. `npm run bench -- output-memory|upload-memory|
 * egress|workspace-storage [flags]` runs one of the deeper single-purpose benchmarks instead.
 * Traffic goes only to 127.0.0.1 and unix sockets.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseFlags, repoRoot, startServer, table, usage, UsageError, writeJson, type Figure, type FlagSpec, type ServerChild } from './lib.js';
import { hotSpots } from './profile.js';
import { RawApi, servicePid, startPodmanService } from './raw-engine.js';
import { cpuSection } from './suite/cpu.js';
import { PLANS, POOL_SIZE, serverLimits, type Context, type Plan, type SectionResult } from './suite/context.js';
import { echoSection } from './suite/echo.js';
import { gvisorSection } from './suite/gvisor.js';
import { idleSection } from './suite/idle.js';
import { ratios, render, targets } from './suite/report.js';
import { streamingSection } from './suite/streaming.js';
import { throughputSection } from './suite/throughput.js';
import { uploadSection } from './suite/upload.js';

const DEEP_DIVES = ['output-memory', 'upload-memory', 'egress', 'workspace-storage'];
// In this order: idle cost is read before the big streaming and upload sections, whose memory
// the server's heap and allocator keep for a while.
const SECTIONS: Record<string, (ctx: Context) => Promise<SectionResult>> = {
  echo: echoSection,
  idle: idleSection,
  throughput: throughputSection,
  streaming: streamingSection,
  upload: uploadSection,
  cpu: cpuSection,
  isolation: gvisorSection,
};
const FLAGS: readonly FlagSpec[] = [
  { name: 'quick', kind: 'bool', help: 'fewer rounds (under two minutes), same JSON' },
  { name: 'smoke', kind: 'bool', help: 'a few rounds of each figure with small sizes (the test suite runs this)' },
  { name: 'out', kind: 'string', help: 'directory for the JSON results (default bench/results)' },
  { name: 'socket', kind: 'string', help: 'Podman API socket (default: $SANDBOXSHIFT_TEST_SOCKET, else a service the bench starts)' },
  { name: 'only', kind: 'string', help: `comma-separated sections (${Object.keys(SECTIONS).join(',')}); latest.json is then left alone` },
  { name: 'profile', kind: 'bool', help: 'run the server under node --cpu-prof for the echo and streaming sections and print its hot spots' },
];

function podmanVersion(): string {
  try {
    return execFileSync('podman', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] && DEEP_DIVES.includes(argv[0])) {
    const r = spawnSync(process.execPath, [join(repoRoot(), 'dist', 'bench', `${argv[0]}.js`), ...argv.slice(1)], { stdio: 'inherit' });
    return r.status ?? 1;
  }
  let f: Map<string, string | number | boolean>;
  try {
    f = parseFlags(argv, FLAGS);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`${err.message ? `bench: ${err.message}\n\n` : ''}usage: npm run bench -- [flags]\n${usage(FLAGS)}\n  or:  npm run bench -- ${DEEP_DIVES.join('|')} [their flags]\n`);
    return err.message ? 2 : 0;
  }
  const plan: Plan = PLANS[f.get('smoke') ? 'smoke' : f.get('quick') ? 'quick' : 'full'];
  const profile = f.get('profile') === true;
  const only = f.has('only') ? String(f.get('only')).split(',') : profile ? ['echo', 'streaming'] : Object.keys(SECTIONS);
  for (const s of only) if (!SECTIONS[s]) throw new UsageError(`unknown section "${s}"`);
  const root = repoRoot();
  const outDir = (f.get('out') as string | undefined) ?? join(root, 'bench', 'results');
  const say = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const started = new Date();
  const loadStart = loadavg();
  const tmp = mkdtempSync(join(tmpdir(), 'sbx-bench-'));
  const limits = serverLimits(plan);
  const watchdog = setTimeout(() => {
    process.stderr.write(`bench: watchdog: still running after the ${plan.mode} budget; temp dir ${tmp}\n`);
    process.exit(1);
  }, { full: 20, quick: 4, smoke: 2 }[plan.mode] * 60_000);
  watchdog.unref();

  let service: Awaited<ReturnType<typeof startPodmanService>> | null = null;
  let server: ServerChild | null = null;
  let raw: RawApi | null = null;
  const figures: Record<string, Figure> = {};
  const notes: string[] = [];
  let socket = (f.get('socket') as string | undefined) ?? process.env.SANDBOXSHIFT_TEST_SOCKET ?? null;
  const socketSource = f.has('socket') ? '--socket' : socket ? 'SANDBOXSHIFT_TEST_SOCKET' : 'started by the bench';
  let serverStartMs = 0;
  try {
    if (!socket) {
      socket = join(tmp, 'podman.sock');
      say(`starting a Podman API service on ${socket}`);
      service = await startPodmanService(root, socket);
    }
    socket = socket.replace(/^unix:\/\//, '');
    const enginePid = service?.pid ?? servicePid(socket);
    const dataDir = join(tmp, 'data');
    mkdirSync(dataDir);
    const record = join(root, '.sandboxshift-data', 'images.json');
    if (existsSync(record)) copyFileSync(record, join(dataDir, 'images.json'));
    const config = {
      dataDir,
      listen: { host: '127.0.0.1', port: 0 },
      engine: { socket, allowedIsolation: ['runc', 'gvisor'] },
      queue: { concurrency: limits['queue.concurrency'], maxQueued: limits['queue.maxQueued'] },
      pool: { size: POOL_SIZE },
      requests: { maxStreams: limits['requests.maxStreams'] },
      workspaces: { archive: { maxCompressedBytes: limits['workspaces.archive.maxCompressedBytes'], maxExpandedBytes: limits['workspaces.archive.maxExpandedBytes'] } },
    };
    const configPath = join(tmp, 'sandboxshift.yaml');
    writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`); // JSON is YAML
    const profDir = join(tmp, 'cpu-prof');
    const nodeArgs = profile ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
    say(`starting the server (child process) on ${socket}`);
    server = await startServer({ root, configPath, env: { ...process.env }, logPath: join(tmp, 'server.log'), timeoutMs: 60_000, nodeArgs });
    serverStartMs = server.startMs;
    const probe = await fetch(`${server.url}/v1/tasks`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ command: 'true' }) });
    const image = ((await probe.json()) as { image: { name: string } }).image.name;
    raw = new RawApi(socket, root, join(tmp, 'raw-workspace'), image);
    const ctx: Context = { root, tmp, plan, server, raw, image, enginePid, say };
    for (const name of only) {
      say(`section ${name}`);
      const r = await SECTIONS[name]!(ctx);
      Object.assign(figures, r.figures);
      notes.push(...(r.notes ?? []));
    }
  } catch (err) {
    process.stderr.write(`bench: failed; kept ${tmp} (server.log, sandboxshift.yaml)\n`);
    throw err;
  } finally {
    clearTimeout(watchdog);
    if (server) await server.stop();
    if (raw) await raw.cleanup();
    if (service) await service.stop();
  }

  let hot: ReturnType<typeof hotSpots> | null = null;
  if (profile) {
    hot = hotSpots(join(tmp, 'cpu-prof'));
    notes.push(`profile: ${hot.total} samples, the server busy in ${hot.busyPct.toFixed(1)}% of them; kept in ${join(tmp, 'cpu-prof')}`);
  }
  const rs = ratios(figures);
  const ts = targets(figures);
  const finished = new Date();
  const machine = { hostname: hostname(), cores: cpus().length, cpuModel: cpus()[0]?.model ?? 'unknown', memoryGiB: +(totalmem() / 2 ** 30).toFixed(1), kernel: release(), node: process.version, podman: podmanVersion() };
  const load = { start: loadStart.map((x) => +x.toFixed(2)), end: loadavg().map((x) => +x.toFixed(2)) };
  const header = [
    `SandboxShift benchmark (${plan.mode}) — ${started.toISOString()}, ${((finished.getTime() - started.getTime()) / 1000).toFixed(0)} s`,
    `machine: ${machine.cores} cores (${machine.cpuModel}), ${machine.memoryGiB} GiB, Linux ${machine.kernel}, node ${machine.node}, ${machine.podman}`,
    `load average (1/5/15 min): ${load.start.join(' ')} at start, ${load.end.join(' ')} at end`,
    `server: child process (node dist/src/server.js), ready in ${Math.round(serverStartMs)} ms; engine socket: ${socket} (${socketSource}); image ${raw?.image}`,
    `raw engine: the bare API path (create, attach, start, end of stream, inspect, remove) with the server's container spec, and podman run --rm --network none (runc, deploy/containers.conf)`,
  ];
  let text = render(figures, rs, ts, limits, header, notes);
  if (hot) text += `\nServer CPU profile: self time as a share of the busy samples (top ${hot.spots.length})\n${table(['self %', 'function', 'where'], hot.spots.map((s) => [s.selfPct.toFixed(1), s.fn, s.where]))}\n`;
  process.stdout.write(text);

  const result = {
    schema: 1,
    mode: plan.mode,
    sections: only,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    machine,
    load,
    server: { process: 'child', startMs: Math.round(serverStartMs) },
    engine: { socket, source: socketSource },
    plan,
    limits,
    figures,
    ratios: rs,
    targets: ts,
    notes,
    ...(hot ? { profile: hot.spots } : {}),
  };
  mkdirSync(outDir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  writeJson(join(outDir, `${stamp}${profile ? '-profile' : ''}.json`), result);
  if (only.length === Object.keys(SECTIONS).length && !profile) writeJson(join(outDir, 'latest.json'), result);
  say(`wrote ${join(outDir, `${stamp}.json`)}`);
  if (!profile) rmSync(tmp, { recursive: true, force: true });
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
