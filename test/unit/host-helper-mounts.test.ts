/**
 * The compiled host helper makes the server's mount and umount calls itself: each form the server
 * uses gives the same mount as mount(8) does (compared in /proc/self/mountinfo), fails as mount(8)
 * fails, and never execs mount(8) or umount(8). Needs root, as the server does.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fromInstall } from '../../src/paths.js';
import { HostCommandError, HostCommands } from '../../src/workspace/host-commands.js';
import { buildCHelper } from '../../src/workspace/idmap.js';
import { mountsUnder } from '../../src/workspace/storage.js';

const dir = mkdtempSync(join(tmpdir(), 'host-helper-'));
const compiledPath = await buildCHelper(fromInstall('deploy/host-helper/host_helper.c'), [join(dir, 'bin')], 'host-helper');

// mount(8), umount(8) and cp(1) stand-ins first in the PATH the compiled helper starts with: were it
// to exec either for a form it should make itself, the call would fail and leave a mark.
const fakeBin = join(dir, 'fakebin');
const marks = join(dir, 'execd');
mkdirSync(fakeBin);
for (const name of ['mount', 'umount', 'cp']) {
  writeFileSync(join(fakeBin, name), `#!/bin/sh\necho "$0 $*" >> ${marks}\nexit 99\n`);
  chmodSync(join(fakeBin, name), 0o755);
}
const realPath = process.env.PATH;
process.env.PATH = `${fakeBin}:${realPath}`;
const compiled = new HostCommands();
compiled.use(compiledPath);
await compiled.run('true', []); // started now, with that PATH
process.env.PATH = realPath;
// The reference: bash running the real mount(8) and umount(8).
const reference = new HostCommands();
const ref = (args: string[]) => reference.run('/usr/bin/mount', args);
const refUmount = (target: string) => reference.run('/usr/bin/umount', [target]);

t.teardown(async () => {
  for (const p of mountsUnder(dir)) execFileSync('umount', ['-l', p]);
  compiled.close();
  reference.close();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
const fresh = () => {
  const d = join(dir, `d${n++}`);
  mkdirSync(d);
  return d;
};

/** What mountinfo says of the mount at `point` (the last one there), loop device numbers blanked. */
function mountOf(point: string) {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === point);
  const line = lines.at(-1);
  if (!line) return null;
  const [pre, post] = line.split(' - ');
  const f = pre!.split(' ');
  const [type, source, superOptions] = post!.split(' ');
  return {
    root: f[3],
    options: f[5],
    propagation: f.slice(6).map((o) => o.replace(/:\d+$/, '')),
    type,
    source: source!.replace(/^\/dev\/loop\d+$/, '/dev/loopN'),
    superOptions,
  };
}

function image(): string {
  const img = join(dir, `img${n++}`);
  writeFileSync(img, '');
  execFileSync('truncate', ['-s', '32M', img]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-O', '^has_journal', img]);
  return img;
}

/** Runs `form` on fresh directories with both helpers; returns both mounts. */
async function both(form: (target: string) => string[], prepare?: (target: string, run: (args: string[]) => Promise<string>) => Promise<void>) {
  const out = [];
  for (const run of [(a: string[]) => compiled.run('mount', a), ref]) {
    const target = fresh();
    if (prepare) await prepare(target, run);
    await run(form(target));
    out.push(mountOf(target));
  }
  return out;
}

t.test('a loop-mounted ext4 image: the same mount, a device freed by the unmount', async (t) => {
  const [mine, theirs] = await both((d) => ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', image(), d]);
  t.ok(mine);
  t.same(mine, theirs);
  t.equal(mine!.source, '/dev/loopN');
  // Writes land in the image, and the loop device goes with the unmount (autoclear).
  const img = image();
  const d = fresh();
  await compiled.run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', img, d]);
  const dev = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === d)!.split(' - ')[1]!.split(' ')[1]!;
  t.not(statSync(d).dev, statSync(dir).dev, 'its own filesystem');
  writeFileSync(join(d, 'kept'), 'yes');
  await compiled.run('umount', [d]);
  t.notOk(existsSync(join(d, 'kept')), 'unmounted');
  const name = dev.split('/').pop()!;
  for (let i = 0; i < 50 && existsSync(`/sys/block/${name}/loop/backing_file`); i++) await new Promise((r) => setTimeout(r, 20));
  t.notOk(existsSync(`/sys/block/${name}/loop/backing_file`), `${dev} was freed`);
  await ref(['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', img, d]);
  t.equal(readFileSync(join(d, 'kept'), 'utf8'), 'yes', 'the file was written to the image');
  await refUmount(d);
});

t.test('an image whose filesystem is still alive is mounted on the device it has, as mount(8) does', async (t) => {
  const img = image();
  const [a, b, c] = [fresh(), fresh(), fresh()];
  await compiled.run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', img, a]);
  // A bind of it outlives its own mount (as a container's copy of a slot does).
  await compiled.run('mount', ['--bind', a, b]);
  await compiled.run('umount', [a]);
  writeFileSync(join(b, 'late'), 'written after the unmount');
  await compiled.run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', img, c]);
  const devOf = (p: string) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === p)!.split(' - ')[1]!.split(' ')[1];
  t.equal(devOf(c), devOf(b), 'the same loop device');
  t.equal(statSync(c).dev, statSync(b).dev, 'the same filesystem instance');
  t.equal(readFileSync(join(c, 'late'), 'utf8'), 'written after the unmount');
  await compiled.run('umount', [b]);
  await compiled.run('umount', [c]);
});

t.test('loop mounts made at once each get a device of their own', async (t) => {
  const targets = Array.from({ length: 12 }, () => ({ img: image(), d: fresh() }));
  await Promise.all(targets.map(({ img, d }) => compiled.run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', img, d])));
  const devs = targets.map(({ d }) => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === d)!.split(' - ')[1]!.split(' ')[1]);
  t.equal(new Set(devs).size, targets.length, 'distinct loop devices');
  await Promise.all(targets.map(({ d }) => compiled.run('umount', [d])));
  for (const { d } of targets) t.equal(mountOf(d), null);
});

t.test('bind mounts, read-only remounts of them, shared propagation: as mount(8) makes them', async (t) => {
  const src = fresh();
  writeFileSync(join(src, 'f'), 'x');
  const [bindMine, bindTheirs] = await both((d) => ['--bind', src, d]);
  t.same(bindMine, bindTheirs);
  for (const flags of ['remount,bind,ro,nosymfollow,nosuid,nodev,noexec', 'remount,bind,ro,nosuid,nodev,noexec', 'remount,bind,ro,nosuid,nodev']) {
    const [mine, theirs] = await both(
      (d) => ['-o', flags, d],
      async (d, run) => void (await run(['--bind', src, d])),
    );
    t.same(mine, theirs, flags);
    t.match(mine!.options, /^ro,/, `${flags}: read-only`);
  }
  const [sharedMine, sharedTheirs] = await both(
    (d) => ['--make-shared', d],
    async (d, run) => void (await run(['--bind', d, d])),
  );
  // Each directory bound onto itself: the roots differ by their names only.
  t.same({ ...sharedMine, root: 'self' }, { ...sharedTheirs, root: 'self' });
  t.same(sharedMine!.propagation, ['shared']);
});

t.test('a small read-only tmpfs with options', async (t) => {
  const [mine, theirs] = await both((d) => ['-t', 'tmpfs', '-o', 'ro,size=4k,mode=0555,nosuid,nodev,noexec', 'sandboxshift-egress', d]);
  t.same(mine, theirs);
  t.match(mine, { type: 'tmpfs', source: 'sandboxshift-egress', options: /^ro,nosuid,nodev,noexec/ });
});

t.test('failures read as mount(8)’s: exit 32 and its words', async (t) => {
  const d = fresh();
  const notMounted = (await compiled.run('umount', [d]).catch((e: unknown) => e)) as HostCommandError;
  t.type(notMounted, HostCommandError);
  t.equal(notMounted.code, 32);
  t.match(notMounted.stderr, /not mounted/);
  const missing = (await compiled.run('umount', [join(dir, 'no-such')]).catch((e: unknown) => e)) as HostCommandError;
  t.match(missing.stderr, /no mount point/);
  const bad = (await compiled.run('mount', ['--bind', join(dir, 'no-such'), d]).catch((e: unknown) => e)) as HostCommandError;
  t.equal(bad.code, 32);
  t.match(bad.stderr, /No such file/);
  const notImage = join(dir, 'not-an-image');
  writeFileSync(notImage, 'x'.repeat(4096));
  const garbage = (await compiled.run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', notImage, d]).catch((e: unknown) => e)) as HostCommandError;
  t.equal(garbage.code, 32, 'an image with no filesystem is refused');
  t.equal(mountOf(d), null);
});

t.test('lazy unmount of a busy mount', async (t) => {
  const src = fresh();
  const d = fresh();
  await compiled.run('mount', ['--bind', src, d]);
  await compiled.run('umount', ['-l', d]);
  t.equal(mountOf(d), null);
});

t.test('cp --sparse=always copies a sparse image byte for byte, holes kept', async (t) => {
  const src = image();
  const dst = join(dir, `copy${n++}`);
  writeFileSync(dst, 'old contents, replaced');
  await compiled.run('cp', ['--sparse=always', src, dst]);
  t.equal(statSync(dst).size, statSync(src).size);
  t.ok(statSync(dst).blocks <= statSync(src).blocks + 8, 'no more blocks than the source');
  t.ok(readFileSync(dst).equals(readFileSync(src)), 'the same bytes');
  const missing = (await compiled.run('cp', ['--sparse=always', join(dir, 'no-such'), dst]).catch((e: unknown) => e)) as HostCommandError;
  t.equal(missing.code, 1);
  t.match(missing.stderr, /No such file/);
});

t.test('no form above exec’d mount(8), umount(8) or cp(1); other forms are exec’d', async (t) => {
  t.notOk(existsSync(marks), existsSync(marks) ? readFileSync(marks, 'utf8') : 'no mark');
  // Not a form the helper makes: mount(8) runs (here, the stand-in).
  const other = (await compiled.run('mount', ['--version']).catch((e: unknown) => e)) as HostCommandError;
  t.equal(other.code, 99);
  t.match(readFileSync(marks, 'utf8'), /mount --version/);
});
