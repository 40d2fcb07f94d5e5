// The benchmark suite (`npm run bench`), run as built with --smoke against the test Podman socket:
// it must print the table and the targets and write JSON with every figure. No figure's value is
// asserted: the machine's load decides them.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { installDir } from '../../src/paths.js';

const entry = join(installDir(), 'dist', 'bench', 'run.js');
if (!existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first`);

const FIGURES = [
  'echo.server.firstByteMs',
  'echo.server.exitMs',
  'echo.api.firstByteMs',
  'echo.api.exitMs',
  'echo.cli.firstByteMs',
  'echo.cli.exitMs',
  'echo.serverWarm.firstByteMs',
  'echo.serverWarm.exitMs',
  ...['c1', 'c2', 'c4', 'c8', 'burst'].flatMap((c) => [`throughput.server.${c}`, `throughput.api.${c}`]),
  'streaming.server.MiBps',
  'streaming.api.logNone.MiBps',
  'streaming.api.logK8sFile.MiBps',
  'streaming.server.rssAboveIdleMiB',
  'upload.server.MBps',
  'upload.tarXzf.MBps',
  'upload.server.rssAboveIdleMiB',
  'idle.server.rssAtRestMiB',
  'idle.server.rssWithSubscribersMiB',
  'idle.server.kibPerSubscriber',
  'cpu.server.msPerTask',
  'cpu.engine.serverPath.msPerTask',
  'cpu.engine.apiPath.msPerTask',
  ...['runc', 'gvisor'].flatMap((i) => [`isolation.${i}.echo.firstByteMs`, `isolation.${i}.echo.exitMs`, `isolation.${i}.streaming.MiBps`]),
];
const TARGETS = ['cold.vsApi', 'cold.vsCli', 'warm.exitMs', 'throughput.c4', 'streaming.vsAttach', 'streaming.rss', 'upload.rss'];

t.test('npm run bench -- --smoke prints the table and writes every figure as JSON', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'sbx-bench-smoke-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [entry, '--smoke', '--out', out], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  t.equal(run.code, 0, `the bench exits 0 (stderr: ${run.stderr.slice(-2000)})`);
  t.match(run.stdout, /figure\s+unit\s+median\s+min\s+max\s+n/, 'prints the figures table');
  t.match(run.stdout, /Server limits set by the bench[\s\S]*queue\.concurrency\s+8[\s\S]*requests\.maxStreams/, 'prints the limits it set');
  t.match(run.stdout, /Targets[\s\S]*warm path: echo hi submit → exit p50 ≤ 25 ms/, 'prints the targets');
  for (const key of FIGURES) t.match(run.stdout, new RegExp(`^${key.replace(/\./g, '\\.')}\\s`, 'm'), `table row ${key}`);

  const files = readdirSync(out).sort();
  t.equal(files.length, 2, 'latest.json and one file for the run');
  t.ok(files.includes('latest.json'));
  const latest = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8'));
  const perRun = JSON.parse(readFileSync(join(out, files.find((f) => f !== 'latest.json')!), 'utf8'));
  t.same(perRun, latest, 'the per-run file holds the same run');
  t.equal(latest.mode, 'smoke');
  t.type(latest.machine.cores, 'number');
  t.equal(latest.load.start.length, 3, 'load averages recorded');
  t.equal(latest.server.process, 'child');
  t.equal(latest.limits['queue.concurrency'], 8);
  t.same(Object.keys(latest.figures).sort(), [...FIGURES].sort(), 'every figure present, nothing unexpected');
  for (const key of FIGURES) {
    const f = latest.figures[key];
    t.ok(['median', 'min', 'max'].every((k) => typeof f[k] === 'number' || f[k] === null) && f.n >= 1 && typeof f.unit === 'string', `${key} has median, min, max, n and a unit`);
  }
  t.ok(latest.ratios.length >= 10, 'ratios against the raw engine');
  t.same(latest.targets.map((x: { id: string }) => x.id), TARGETS, 'every target reported');
  for (const x of latest.targets) t.ok(x.met === true || x.met === false || x.met === null, `${x.id} is met, not met or not measured`);
});
