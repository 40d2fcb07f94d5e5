/**
 * What a workspace filesystem costs: every task without a workspace creates an
 * empty one, and every task mounts and unmounts its workspace. Measures, with the server's own
 * WorkspaceStorage, the median of N runs of each step, against a plain mkdir/rmdir.
 *
 *   npm run build && npm run bench -- workspace-storage [--runs 30] [--quota-mb 1024]
 *
 * A benchmark, not a test: prints figures and exits 0. Needs root (mkfs, mount). Everything lives
 * in a temporary directory that is unmounted and removed at the end.
 */
import { mkdirSync, mkdtempSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { packView, planView } from '../src/workspace/readback.js';
import { unmountAllUnder, WorkspaceStorage } from '../src/workspace/storage.js';

const arg = (name: string, def: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const runs = arg('runs', 30);
const archiveMib = arg('archive-mib', 64);
const quotaMb = arg('quota-mb', 1024);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

const root = mkdtempSync(join(tmpdir(), 'sbx-bench-ws-'));
const storage = new WorkspaceStorage(join(root, 'workspaces'), join(root, 'views'), quotaMb * 1024 * 1024);
mkdirSync(join(root, 'workspaces'));
const times: Record<string, number[]> = { plain: [], create: [], mount: [], unmount: [], view: [], destroy: [] };
let imageBytes = 0;
try {
  for (let i = 0; i < runs; i++) {
    const id = `ws_bench${i}`;
    let t0 = performance.now();
    mkdirSync(join(root, `plain${i}`));
    rmdirSync(join(root, `plain${i}`));
    times.plain!.push(performance.now() - t0);

    t0 = performance.now();
    await storage.create(id);
    times.create!.push(performance.now() - t0);
    imageBytes = statSync(storage.image(id)).blocks * 512;

    t0 = performance.now();
    await storage.acquire(id);
    times.mount!.push(performance.now() - t0);

    t0 = performance.now();
    const view = await storage.openView(id);
    await view.close();
    times.view!.push(performance.now() - t0);

    t0 = performance.now();
    await storage.release(id);
    times.unmount!.push(performance.now() - t0);

    t0 = performance.now();
    await storage.destroy(id);
    times.destroy!.push(performance.now() - t0);
  }
  // Read-back: the server's archive walk (through a nosymfollow view) against GNU tar on the
  // same directory. Half random, half zero bytes, in 1 MiB files.
  const id = 'ws_archive';
  await storage.create(id);
  const dir = await storage.acquire(id);
  for (let i = 0; i < archiveMib; i++) writeFileSync(join(dir, `f${i}`), i % 2 ? randomBytes(1024 * 1024) : Buffer.alloc(1024 * 1024));
  const packOnce = async () => {
    const view = await storage.openView(id);
    const t0 = performance.now();
    let bytes = 0;
    const plan = await planView(view.dir, Number.MAX_SAFE_INTEGER);
    await new Promise<void>((resolve, reject) => {
      const s = packView(view.dir, plan, () => undefined);
      s.on('data', (c: Buffer) => (bytes += c.length));
      s.on('end', resolve);
      s.on('error', reject);
    });
    const ms = performance.now() - t0;
    await view.close();
    return { ms, bytes };
  };
  const ours = [await packOnce(), await packOnce(), await packOnce()].sort((a, b) => a.ms - b.ms)[1]!;
  const tarRuns = [0, 1, 2].map(() => {
    const t0 = performance.now();
    execFileSync('sh', ['-c', `tar -czf - -C ${dir} . | wc -c`]);
    return performance.now() - t0;
  });
  times.archive = [ours.ms];
  times.tar = tarRuns;
  await storage.release(id);
} finally {
  await storage.close();
  await unmountAllUnder(root);
  rmSync(root, { recursive: true, force: true });
}

const perTask = median(times.create!) + median(times.mount!) + median(times.unmount!);
console.log(`workspace storage, ${runs} runs, quota ${quotaMb} MiB (medians)`);
console.log(`  plain mkdir+rmdir            ${fmt(median(times.plain!))}`);
console.log(`  create (sparse image + mkfs) ${fmt(median(times.create!))}   image occupies ${(imageBytes / 1024).toFixed(0)} KiB on the host`);
console.log(`  mount (loop)                 ${fmt(median(times.mount!))}`);
console.log(`  read-back view (bind, remount ro,nosymfollow, unmount) ${fmt(median(times.view!))}`);
console.log(`  unmount                      ${fmt(median(times.unmount!))}`);
console.log(`  destroy (image + mount point) ${fmt(median(times.destroy!))}`);
console.log(`  a task without a workspace pays create+mount+unmount = ${fmt(perTask)} (${(perTask / median(times.plain!)).toFixed(0)}x a plain directory)`);
console.log(`  archive of ${archiveMib} MiB (half random): server walk ${fmt(median(times.archive!))} (${(archiveMib / (median(times.archive!) / 1000)).toFixed(0)} MiB/s), \`tar -czf\` ${fmt(median(times.tar!))}, ratio ${(median(times.archive!) / median(times.tar!)).toFixed(2)}x`);
