import { statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { tar, zip } from '../helpers/archives.js';
import { api, runTask } from '../helpers/client.js';
import { upload } from '../helpers/intake.js';
import { BOTH_ISOLATIONS, ISOLATIONS } from '../helpers/isolation.js';
import { startTestServer } from '../helpers/server.js';
import { mountsUnder } from '../../src/workspace/storage.js';

// Every workspace is its own ext4 filesystem of `quotaMb`: the quota is a hard cap, not a du.
const QUOTA_MB = 16;
const srv = await startTestServer({ ...BOTH_ISOLATIONS, workspaces: { quotaMb: QUOTA_MB }, requests: { bodyBytes: 32 * 1024 * 1024 } });
t.teardown(() => srv.close());

const hostFree = () => {
  const s = statfsSync(srv.dataDir);
  return s.bavail * s.bsize;
};
const newWorkspace = async (files: Record<string, string> = { 'keep.txt': 'keep\n' }) => {
  const r = await api(srv.url, 'POST', '/v1/workspaces', { files });
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${r.text}`);
  return r.json as { id: string; usage: { usedBytes: number; quotaBytes: number } };
};

// The quota holds under each isolation (under gVisor the gofer writes into the same filesystem).
for (const isolation of ISOLATIONS) {
  t.test(`${isolation}: a task writing past the quota gets ENOSPC, ends failed with reason disk_quota, and the host is untouched`, async (t) => {
    const a = await newWorkspace();
    const b = await newWorkspace();
    t.equal(a.usage.quotaBytes, QUOTA_MB * 1024 * 1024, 'the workspace shows its quota');
    const freeBefore = hostFree();
    // Tries to write 1 GiB: 64 times the quota.
    const full = await runTask(srv.url, 'head -c 1073741824 /dev/zero > big; rc=$?; exit $rc', { isolation, workspace: { id: a.id } });
    t.match(full.task, { status: 'failed', reason: 'disk_quota' });
    t.not(full.task.exitCode, 0);
    t.match(full.stderr, /No space left on device/, 'the write inside the container failed with ENOSPC');
    const freeAfter = hostFree();
    // Other work on this machine changes free space too, so allow a margin far below the 1 GiB tried.
    t.ok(freeBefore - freeAfter < 256 * 1024 * 1024, `host free space dropped by ${Math.round((freeBefore - freeAfter) / 1048576)} MiB (< 256 MiB; the task tried 1024)`);
    const img = statSync(join(srv.dataDir, 'workspaces', `${a.id}.img`));
    t.ok(img.blocks * 512 <= QUOTA_MB * 1024 * 1024, `the image occupies ${img.blocks * 512} bytes on the host, at most the quota`);

    const shown = (await api(srv.url, 'GET', `/v1/workspaces/${a.id}`)).json;
    t.ok(shown.usage.usedBytes > 0.9 * shown.usage.quotaBytes, `usage is refreshed after the task (${shown.usage.usedBytes} of ${shown.usage.quotaBytes})`);
    t.ok(shown.bytes > 0.9 * shown.usage.quotaBytes, 'the byte count is refreshed too');
    t.equal(shown.files, 2, 'keep.txt and big');

    const other = await runTask(srv.url, 'head -c 4194304 /dev/zero > four-mib && wc -c < four-mib', { isolation, workspace: { id: b.id } });
    t.match(other.task, { status: 'succeeded' }, 'another workspace is unaffected');
    t.equal(other.stdout.trim(), '4194304');

    const freed = await runTask(srv.url, 'rm big && echo ok > again && cat keep.txt again', { isolation, workspace: { id: a.id } });
    t.match(freed.task, { status: 'succeeded', reason: null }, 'freeing space makes the workspace usable again');
    t.equal(freed.stdout, 'keep\nok\n');
    t.ok((await api(srv.url, 'GET', `/v1/workspaces/${a.id}`)).json.usage.usedBytes < 1024 * 1024, 'usage dropped after the delete');

    const plain = await runTask(srv.url, 'exit 3', { isolation, workspace: { id: a.id } });
    t.match(plain.task, { status: 'failed', exitCode: 3, reason: null }, 'an ordinary failure on a workspace with room is not disk_quota');
    // The container is removed (and then the workspace unmounted) after the task is reported done.
    for (let i = 0; i < 100 && mountsUnder(srv.dataDir).length > 0; i++) await sleep(100);
    t.same(mountsUnder(srv.dataDir), [], 'no workspace stays mounted once its tasks are done');
  });
}

t.test('running out of inodes is the quota too', async (t) => {
  const id = (await newWorkspace()).id;
  // 16 MiB at one inode per 8 KiB: 2048 inodes.
  const r = await runTask(srv.url, 'i=0; while [ $i -lt 4000 ]; do : > f$i || exit 1; i=$((i+1)); done', { workspace: { id } });
  t.match(r.task, { status: 'failed', reason: 'disk_quota' });
  t.match(r.stderr, /No space left on device/);
});

t.test('a task without a workspace gets an empty one with the same quota', async (t) => {
  const r = await runTask(srv.url, 'ls -A; df -k /workspace | tail -1');
  t.match(r.task, { status: 'succeeded' });
  t.equal(r.stdout.split('\n')[0], '.home', 'only .home in a fresh workspace (no lost+found)');
  const size = Number(r.stdout.trim().split('\n').pop()!.split(/\s+/)[1]);
  t.ok(size > 0.8 * QUOTA_MB * 1024 && size <= QUOTA_MB * 1024, `the filesystem is ${size} KiB`);
});

t.test('intake past the quota is WORKSPACE_QUOTA_EXCEEDED and leaves nothing behind', async (t) => {
  const before = (await import('node:fs')).readdirSync(join(srv.dataDir, 'workspaces')).sort();
  const r = await api(srv.url, 'POST', '/v1/workspaces', { files: { 'a.bin': 'x'.repeat(20 * 1024 * 1024) } });
  t.equal(r.status, 413);
  t.match(r.json.error, { code: 'WORKSPACE_QUOTA_EXCEEDED', details: { quotaMb: QUOTA_MB } });
  t.same((await import('node:fs')).readdirSync(join(srv.dataDir, 'workspaces')).sort(), before, 'no image, no mount point');
  t.same(mountsUnder(srv.dataDir), [], 'nothing left mounted');
  // The same through an archive: the file is not silently cut at the quota.
  const up = await upload(srv.url, tar([{ name: 'big.bin', data: Buffer.alloc(20 * 1024 * 1024, 1) }]), 'application/x-tar');
  t.match([up.status, up.json?.error?.code], [413, 'WORKSPACE_QUOTA_EXCEEDED'], 'a tar past the quota');
  const z = await upload(srv.url, zip([{ name: 'big.bin', data: Buffer.alloc(20 * 1024 * 1024, 1) }]), 'application/zip');
  t.match([z.status, z.json?.error?.code], [413, 'WORKSPACE_QUOTA_EXCEEDED'], 'a zip past the quota');
  t.same((await import('node:fs')).readdirSync(join(srv.dataDir, 'workspaces')).sort(), before, 'no image, no mount point');
});
