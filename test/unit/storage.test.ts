import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { mountsUnder, unmountAllUnder, WorkspaceStorage } from '../../src/workspace/storage.js';

// Real loop mounts (the server runs as root): small images, all under a temporary directory.
const root = mkdtempSync(join(tmpdir(), 'sbx-storage-'));
mkdirSync(join(root, 'workspaces'));
const storage = new WorkspaceStorage(join(root, 'workspaces'), join(root, 'views'), 8 * 1024 * 1024);
t.teardown(async () => {
  await storage.close();
  await unmountAllUnder(root);
  rmSync(root, { recursive: true, force: true });
});
const mounted = (id: string) => mountsUnder(root).includes(storage.dir(id));

t.test('mounts are reference-counted and serialised per workspace', async (t) => {
  await storage.create('ws_a');
  t.equal(statSync(storage.image('ws_a')).size, 8 * 1024 * 1024, 'a sparse image of the quota size');
  t.notOk(mounted('ws_a'), 'not mounted until used');
  const [d1, d2] = await Promise.all([storage.acquire('ws_a'), storage.acquire('ws_a')]);
  t.equal(d1, d2);
  t.equal(mountsUnder(root).length, 1, 'two holds, one mount');
  t.ok(statSync(d1).dev !== statSync(root).dev, 'the directory is its own filesystem');
  await storage.release('ws_a');
  t.ok(mounted('ws_a'), 'still held once');
  // Release and acquire racing: the workspace must end mounted, since it is held.
  await Promise.all([storage.release('ws_a'), storage.acquire('ws_a')]);
  t.ok(mounted('ws_a'), 'held again: mounted');
  t.ok(storage.inUse('ws_a'));
  await storage.release('ws_a');
  t.notOk(mounted('ws_a'), 'the last release unmounts');
  t.notOk(storage.inUse('ws_a'));
});

t.test('new workspaces are sparse copies of one empty filesystem made once, each its own', async (t) => {
  await Promise.all(['ws_t1', 'ws_t2', 'ws_t3'].map((id) => storage.create(id)));
  const templates = readdirSync(join(root, 'workspace-template'));
  t.equal(templates.length, 1, `one template: ${templates.join(', ')}`);
  t.match(templates[0], /^8388608\.[0-9a-f]{12}\.img$/, 'named by quota and mkfs options');
  const [a, b] = await Promise.all([storage.acquire('ws_t1'), storage.acquire('ws_t2')]);
  t.same(readdirSync(a).filter((n) => n !== 'lost+found'), [], 'empty');
  t.equal(statSync(a).uid, 65532, 'its root belongs to the sandbox user');
  writeFileSync(join(a, 'only-in-t1'), 'x');
  t.notOk(existsSync(join(b, 'only-in-t1')), 'another workspace does not see it');
  t.not(statSync(a).dev, statSync(b).dev);
  await Promise.all([storage.release('ws_t1'), storage.release('ws_t2')]);
  t.ok(statSync(storage.image('ws_t3')).blocks * 512 < 8 * 1024 * 1024, 'the copy is sparse');
  const t3 = await storage.acquire('ws_t3');
  t.notOk(existsSync(join(t3, 'only-in-t1')), 'nor does a copy made before the write');
  await storage.release('ws_t3');
  for (const id of ['ws_t1', 'ws_t2', 'ws_t3']) await storage.destroy(id);
  t.same(readdirSync(join(root, 'workspace-template')), templates, 'the template stays');
});

t.test('a view follows no link, not even in an intermediate component', async (t) => {
  const dir = await storage.acquire('ws_a');
  const secret = join(root, 'secret.txt');
  writeFileSync(secret, 'host secret\n');
  writeFileSync(join(dir, 'plain.txt'), 'plain\n');
  symlinkSync(secret, join(dir, 'link'));
  symlinkSync(root, join(dir, 'dirlink'));
  t.equal(readFileSync(join(dir, 'dirlink', 'secret.txt'), 'utf8'), 'host secret\n', 'the workspace mount itself follows links (tasks need them)');
  const view = await storage.openView('ws_a');
  t.equal(readFileSync(join(view.dir, 'plain.txt'), 'utf8'), 'plain\n');
  t.throws(() => readFileSync(join(view.dir, 'link')), { code: 'ELOOP' });
  t.throws(() => readFileSync(join(view.dir, 'dirlink', 'secret.txt')), { code: 'ELOOP' }, 'nosymfollow guards intermediate components too');
  t.throws(() => writeFileSync(join(view.dir, 'new'), 'x'), { code: 'EROFS' }, 'the view is read-only');
  await view.close();
  t.notOk(existsSync(view.dir), 'the view is gone after close');
  await storage.release('ws_a');
  t.same(mountsUnder(root), [], 'nothing left mounted');
});

t.test('destroy removes the image and the mount point; a destroyed workspace cannot be mounted', async (t) => {
  await storage.destroy('ws_a');
  t.notOk(existsSync(storage.image('ws_a')));
  t.notOk(existsSync(storage.dir('ws_a')));
  await t.rejects(storage.acquire('ws_a'), { code: 'WORKSPACE_NOT_FOUND' });
  t.notOk(storage.inUse('ws_a'), 'a failed acquire holds nothing');
});
