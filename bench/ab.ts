/**
 * Two builds of the server side by side: `npm run bench -- ab --baseline ROOT [--rounds N]
 * [--tasks N] [--socket PATH] [--profile]`.
 *
 * Starts this checkout's server and the one built in ROOT (another checkout with `dist/`, e.g.
 * main's) as child processes on the same Podman API service, each with a pool of the default
 * shape, and measures both in interleaved rounds: warm `echo hi` submit → exit through REST +
 * WebSocket, and short tasks per second at concurrency 4 next to the bare API path. On a machine
 * whose load changes under the run, the medians of one run and their ratios are what compare.
 * Traffic goes only to 127.0.0.1 and unix sockets.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { hotSpots } from './profile.js';
import { median, parseFlags, ratePerSecond, repoRoot, serverRun, sleep, startServer, table, usage, UsageError, type FlagSpec, type ServerChild } from './lib.js';
import { RawApi } from './raw-engine.js';
import { POOL_SIZE } from './suite/context.js';

const FLAGS: readonly FlagSpec[] = [
  { name: 'baseline', kind: 'string', help: 'root of the other checkout (with dist/ built)' },
  { name: 'rounds', kind: 'int', min: 1, max: 100, help: 'interleaved rounds (default 10)' },
  { name: 'tasks', kind: 'int', min: 1, max: 200, help: 'tasks per throughput round and side (default 12)' },
  { name: 'socket', kind: 'string', help: 'Podman API socket (default $SANDBOXSHIFT_TEST_SOCKET)' },
  { name: 'profile', kind: 'bool', help: 'run both servers under node --cpu-prof and print their hot spots' },
];
/** Time the pool gets to refill the member the previous warm round took (as in the suite). */
const REFILL_MS = 600;
const CONCURRENCY = 4;

async function start(root: string, tmp: string, name: string, socket: string, profile: boolean): Promise<ServerChild> {
  const dataDir = join(tmp, name, 'data');
  mkdirSync(dataDir, { recursive: true });
  const record = join(root, '.sandboxshift-data', 'images.json');
  if (existsSync(record)) copyFileSync(record, join(dataDir, 'images.json'));
  const config = { dataDir, listen: { host: '127.0.0.1', port: 0 }, engine: { socket }, queue: { concurrency: 8, maxQueued: 1000 }, pool: { size: POOL_SIZE } };
  const configPath = join(tmp, name, 'sandboxshift.yaml');
  writeFileSync(configPath, `${JSON.stringify(config)}\n`);
  const nodeArgs = profile ? ['--cpu-prof', '--cpu-prof-dir', join(tmp, name, 'cpu-prof')] : [];
  return startServer({ root, configPath, env: { ...process.env }, logPath: join(tmp, name, 'server.log'), timeoutMs: 60_000, nodeArgs });
}

async function main(): Promise<number> {
  let f: Map<string, string | number | boolean>;
  try {
    f = parseFlags(process.argv.slice(2), FLAGS);
    if (!f.has('baseline')) throw new UsageError('--baseline is required');
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench ab: ${err.message}\n\nusage: npm run bench -- ab --baseline ROOT [flags]\n${usage(FLAGS)}\n`);
    return 2;
  }
  const socket = String(f.get('socket') ?? process.env.SANDBOXSHIFT_TEST_SOCKET ?? '').replace(/^unix:\/\//, '');
  if (!socket) throw new Error('no Podman API socket: --socket or SANDBOXSHIFT_TEST_SOCKET');
  const rounds = Number(f.get('rounds') ?? 10);
  const tasks = Number(f.get('tasks') ?? 12);
  const profile = f.get('profile') === true;
  const roots = { this: repoRoot(), baseline: resolve(String(f.get('baseline'))) };
  const tmp = mkdtempSync(join(tmpdir(), 'sbx-bench-ab-'));
  const load0 = loadavg();
  const servers: Partial<Record<keyof typeof roots, ServerChild>> = {};
  let raw: RawApi | null = null;
  const warm: Record<string, number[]> = { this: [], baseline: [] };
  const c4: Record<string, number[]> = { this: [], baseline: [], api: [] };
  try {
    for (const k of ['this', 'baseline'] as const) servers[k] = await start(roots[k], tmp, k, socket, profile);
    const probe = await serverRun(servers.this!, 'true');
    raw = new RawApi(socket, roots.this, join(tmp, 'raw-workspace'), probe.task.image.name);
    await sleep(3000); // both pools fill
    const sides = ['this', 'baseline'] as const;
    for (let i = 0; i < rounds; i++) {
      for (const k of i % 2 ? [...sides].reverse() : sides) {
        await sleep(REFILL_MS);
        warm[k]!.push((await serverRun(servers[k]!, 'echo hi')).exitMs);
      }
    }
    for (let i = 0; i < Math.max(1, Math.ceil(rounds / 3)); i++) {
      const order = [...(['this', 'baseline', 'api'] as const)];
      for (let j = 0; j < i % 3; j++) order.push(order.shift()!);
      for (const k of order) {
        await sleep(REFILL_MS * 2);
        c4[k]!.push(await ratePerSecond(tasks, CONCURRENCY, () => (k === 'api' ? raw!.run('true') : serverRun(servers[k]!, 'true'))));
      }
    }
  } finally {
    for (const s of Object.values(servers)) await s?.stop();
    await raw?.cleanup();
  }
  const m = (xs: number[]) => median(xs);
  const rows = [
    ['warm echo hi submit → exit p50 (ms)', m(warm.this!).toFixed(1), m(warm.baseline!).toFixed(1), (m(warm.this!) / m(warm.baseline!)).toFixed(2), ''],
    ['warm echo min / max (ms)', `${Math.min(...warm.this!).toFixed(1)} / ${Math.max(...warm.this!).toFixed(1)}`, `${Math.min(...warm.baseline!).toFixed(1)} / ${Math.max(...warm.baseline!).toFixed(1)}`, '', ''],
    [`throughput c${CONCURRENCY} (tasks/s)`, m(c4.this!).toFixed(2), m(c4.baseline!).toFixed(2), (m(c4.this!) / m(c4.baseline!)).toFixed(2), m(c4.api!).toFixed(2)],
    [`throughput c${CONCURRENCY} vs raw API`, (m(c4.this!) / m(c4.api!)).toFixed(2), (m(c4.baseline!) / m(c4.api!)).toFixed(2), '', ''],
  ];
  const load1 = loadavg();
  let out = `bench ab — this: ${roots.this}, baseline: ${roots.baseline}; ${rounds} warm rounds, ${c4.this!.length} throughput rounds of ${tasks} tasks\n`;
  out += `load average (1/5/15 min): ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at end\n\n`;
  out += `${table(['figure', 'this', 'baseline', 'this/baseline', 'raw API'], rows)}\n`;
  if (profile) {
    for (const k of ['this', 'baseline']) {
      const hot = hotSpots(join(tmp, k, 'cpu-prof'), 12);
      out += `\n${k}: ${hot.total} samples, busy in ${hot.busyPct.toFixed(1)}%\n${table(['self %', 'function', 'where'], hot.spots.map((s) => [s.selfPct.toFixed(1), s.fn, s.where]))}\n`;
    }
    out += `\nprofiles kept in ${tmp}\n`;
  }
  process.stdout.write(out);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench ab: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
