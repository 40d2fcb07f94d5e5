/**
 * The write-back on Kubernetes when the server was not attached as the task ended: the gate's
 * base64 archive is read from pods/log (fake API server and kubelet, the real engine), verified
 * against its end line, and only then replaces the workspace's files. Also: a task's background
 * process that keeps writing to stdout does not get into the archive.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import type { SandboxExit, SandboxJob } from '../../src/runtime/engine.js';
import { Collected, workspaceDir } from '../helpers/engine-contract.js';
import { KUBE_SHAPE, kubeEngine, kubeSettings } from '../helpers/kube.js';
import { startFakeKube } from './fake/index.js';

const fake = await startFakeKube();
t.teardown(() => fake.close());
const settings = kubeSettings(t, fake.kubeconfigPath, fake.namespace);

let seq = 0;
function job(dir: string, command: string): SandboxJob {
  return { taskId: `tsk_WriteBack_${process.pid}_${++seq}`, command, env: {}, workspaceDir: dir, workspaceReadonly: false, stdin: false, backstopSeconds: 120 };
}

function within(exit: Promise<SandboxExit>, ms: number): Promise<SandboxExit> {
  return Promise.race([exit, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no exit within ${ms} ms`)), ms).unref())]);
}

async function podEnded(jobName: string): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    const pod = fake.objects('pods').find((p) => p.metadata.labels?.['batch.kubernetes.io/job-name'] === jobName);
    if (pod && ['Succeeded', 'Failed'].includes(pod.status?.phase)) return;
    if (Date.now() > until) throw new Error(`the pod of ${jobName} did not end`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const TASK = 'echo started; sleep 1; rm old.txt; echo new > new.txt; mkdir -p d/e; printf "\\001\\377bin" > d/e/b.bin; head -c 4000 /dev/zero | tr "\\000" x > big.txt; echo finished';
const BINARY = Buffer.from([1, 255, 98, 105, 110]);

/** Starts TASK, lets the server go before the task ends, and adopts the ended pod with a new engine. */
async function endedWhileAway(tt: Tap.Test, dir: string): Promise<{ exit: SandboxExit; out: Collected }> {
  const first = kubeEngine(settings);
  const out1 = new Collected();
  const sb = await first.start(KUBE_SHAPE, job(dir, TASK), out1.handlers());
  await out1.waitFor('started');
  await sb.detach();
  await first.close();
  await podEnded(sb.containerId);
  const second = kubeEngine(settings);
  tt.teardown(() => second.close());
  const out = new Collected();
  const adopted = await second.adopt(sb.containerId, { stdin: false, from: null, workspaceDir: dir }, out.handlers());
  tt.ok(adopted, 'adopted');
  return { exit: await within(adopted!.exit, 30_000), out };
}

/** A line of the gate's base64 (76 characters and its newline). */
const isArchiveLine = (line: Buffer) => line.length === 77 && /^[A-Za-z0-9+/]{76}\n$/.test(line.toString('latin1'));

t.test('a task that ended while no server was attached: its files are written back from pods/log', async (tt) => {
  const dir = workspaceDir(tt, { 'old.txt': 'before\n', 'keep.txt': 'kept\n' });
  const { exit, out } = await endedWhileAway(tt, dir);
  tt.equal(exit.exitCode, 0);
  tt.equal(readFileSync(join(dir, 'new.txt'), 'utf8'), 'new\n', 'a new file is there');
  tt.same(readFileSync(join(dir, 'd/e/b.bin')), BINARY, 'a binary file in a new directory, byte for byte');
  tt.equal(readFileSync(join(dir, 'big.txt'), 'utf8'), 'x'.repeat(4000), 'a larger file, whole');
  tt.equal(readFileSync(join(dir, 'keep.txt'), 'utf8'), 'kept\n', 'an untouched file stayed');
  tt.notOk(existsSync(join(dir, 'old.txt')), 'the removed file is gone');
  tt.match(out.notes.join('\n'), /the workspace was written back from pods\/log \(the server was not attached when the task ended\)/, 'the note says where it came from');
  tt.notMatch(out.notes.join('\n'), /not written back/);
  tt.equal(out.text('combined'), 'started\nfinished\n', 'the output from pods/log ends before the boundary: no archive text in it');
});

t.test('an archive altered in pods/log leaves the workspace as it was, with a note', async (tt) => {
  // A line inside big.txt's content ("xxx" is "eHh4" in base64): still base64 and still a valid
  // tar, so only the end line's checksum tells.
  let seen = 0;
  fake.faults.editLog((line) => {
    if (!isArchiveLine(line) || !/^[eHh4]{76}\n$/.test(line.toString('latin1')) || ++seen !== 2) return line;
    const altered = Buffer.from(line);
    altered[0] = altered[0]! + 1;
    return altered;
  });
  tt.teardown(() => fake.faults.editLog(null));
  const dir = workspaceDir(tt, { 'old.txt': 'before\n' });
  const { exit, out } = await endedWhileAway(tt, dir);
  tt.equal(exit.exitCode, 0);
  tt.ok(seen >= 2, 'a line of the archive was altered');
  tt.equal(readFileSync(join(dir, 'old.txt'), 'utf8'), 'before\n', 'the files are as before the task');
  tt.notOk(existsSync(join(dir, 'new.txt')), 'nothing of the altered archive was written');
  tt.match(out.notes.join('\n'), /the workspace was not written back \(its files are as before the task\): the archive was altered: its checksum does not match/);
});

t.test('an archive cut short in pods/log (a line dropped, as rotation drops them) leaves the workspace as it was, with a note', async (tt) => {
  let seen = 0;
  fake.faults.editLog((line) => (isArchiveLine(line) && ++seen === 2 ? null : line));
  tt.teardown(() => fake.faults.editLog(null));
  const dir = workspaceDir(tt, { 'old.txt': 'before\n' });
  const { out } = await endedWhileAway(tt, dir);
  tt.equal(readFileSync(join(dir, 'old.txt'), 'utf8'), 'before\n', 'the files are as before the task');
  tt.notOk(existsSync(join(dir, 'new.txt')));
  tt.match(out.notes.join('\n'), /the workspace was not written back \(its files are as before the task\): the archive is incomplete or altered: \d+ bytes arrived, the pod sent \d+/);
});

t.test('a background process writing to stdout forever: the task ends and its workspace is written back whole', async (tt) => {
  const engine = kubeEngine(settings);
  tt.teardown(() => engine.close());
  const dir = workspaceDir(tt, { 'old.txt': 'before\n' });
  const out = new Collected();
  const sb = await engine.start(KUBE_SHAPE, job(dir, '(while :; do echo spam; sleep 0.005; done) & sleep 0.5; echo made > made.txt; rm old.txt'), out.handlers());
  const exit = await within(sb.exit, 30_000);
  tt.equal(exit.exitCode, 0);
  tt.equal(readFileSync(join(dir, 'made.txt'), 'utf8'), 'made\n', 'the file the task made came back');
  tt.notOk(existsSync(join(dir, 'old.txt')), 'the file it removed is gone');
  tt.notMatch(out.notes.join('\n'), /not written back/, 'no note of a failed write-back');
  tt.match(out.text('stdout'), /^(spam\n)+$/, 'stdout is the background process’s lines only, no archive text');
});

t.test('an image without base64: the gate says so, and the workspace is left as it was with a note', async (tt) => {
  // The fake's pods see the host's files: a PATH of every tool the gate needs but base64.
  const bin = mkdtempSync('/var/tmp/sbx-nobase64-');
  tt.teardown(() => rmSync(bin, { recursive: true, force: true }));
  chmodSync(bin, 0o755);
  for (const tool of ['head', 'tar', 'cksum', 'tee', 'mkfifo', 'rm']) {
    symlinkSync(spawnSync('sh', ['-c', `command -v ${tool}`]).stdout.toString().trim(), join(bin, tool));
  }
  const engine = kubeEngine(settings);
  tt.teardown(() => engine.close());
  const dir = workspaceDir(tt, { 'old.txt': 'before\n' });
  const out = new Collected();
  const sb = await engine.start(KUBE_SHAPE, { ...job(dir, 'echo made > made.txt; rm old.txt'), env: { PATH: bin } }, out.handlers());
  tt.equal((await within(sb.exit, 30_000)).exitCode, 0, 'the exit is the command’s');
  tt.equal(readFileSync(join(dir, 'old.txt'), 'utf8'), 'before\n', 'the files are as before the task');
  tt.notOk(existsSync(join(dir, 'made.txt')));
  tt.match(out.notes.join('\n'), /the workspace was not written back \(its files are as before the task\): the pod could not send it: the image lacks base64/);
  tt.notMatch(out.notes.join('\n'), /pods\/log/, 'pods/log holds the same: it is not read');
});

// Last in this file: the attach faults it leaves unused stay armed.
t.test('an attach dropped before the task ended and refused until the pod ended: written back from pods/log', async (tt) => {
  const engine = kubeEngine(settings);
  tt.teardown(() => engine.close());
  const dir = workspaceDir(tt, { 'old.txt': 'before\n', 'keep.txt': 'kept\n' });
  const out = new Collected();
  const sb = await engine.start(KUBE_SHAPE, job(dir, TASK), out.handlers());
  await out.waitFor('started');
  for (let i = 0; i < 40; i++) fake.faults.failNext('GET', /\/pods\/[^/]+\/attach$/, 500);
  fake.faults.dropAttaches();
  const exit = await within(sb.exit, 30_000);
  tt.equal(exit.exitCode, 0);
  tt.equal(readFileSync(join(dir, 'new.txt'), 'utf8'), 'new\n', 'a new file is there');
  tt.same(readFileSync(join(dir, 'd/e/b.bin')), BINARY, 'a binary file, byte for byte');
  tt.notOk(existsSync(join(dir, 'old.txt')), 'the removed file is gone');
  tt.match(out.notes.join('\n'), /the workspace was written back from pods\/log \(the server was not attached when the task ended\)/);
  tt.match(out.all(), /finished\n$/, 'the output after the drop came from pods/log, cut before the boundary');
});
