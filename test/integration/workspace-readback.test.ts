import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request, type ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { getBytes, readTarGz } from '../helpers/archive.js';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { sleep } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';
import { mountsUnder } from '../../src/workspace/storage.js';

const srv = await startTestServer();
t.teardown(() => srv.close());

// A host canary: if host-side read-back ever followed a planted link, this marker would show up.
const canaryDir = mkdtempSync(join(tmpdir(), 'sbx-canary-'));
const MARKER = `CANARY-${randomBytes(8).toString('hex')}`;
writeFileSync(join(canaryDir, 'canary.txt'), `${MARKER}\n`);
t.teardown(() => rmSync(canaryDir, { recursive: true, force: true }));

const newWorkspace = async (files: Record<string, string>) => {
  const r = await api(srv.url, 'POST', '/v1/workspaces', { files });
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${r.text}`);
  return r.json.id as string;
};
const archiveOf = async (id: string) => {
  const r = await getBytes(`${srv.url}/v1/workspaces/${id}/archive`);
  return { ...r, entries: r.status === 200 ? await readTarGz(r.body) : [] };
};
const hostSecrets = (buf: Buffer | string) => {
  const s = buf.toString();
  return s.includes(MARKER) || /root:.*:0:0:/.test(s);
};

t.test('round trip: a task changes files, the archive shows the changes', async (t) => {
  const id = await newWorkspace({
    'main.py': 'print("v1")\n',
    'data/in.txt': '1\n2\n3\n',
    'old.txt': 'remove me\n',
    'requirements.txt': '',
  });
  const script = [
    'import os',
    "nums = [int(x) for x in open('data/in.txt').read().split()]",
    "open('data/out.txt', 'w').write(str(sum(nums)) + '\\n')",
    "open('main.py', 'a').write('print(\"v2\")\\n')",
    "os.remove('old.txt')",
    "os.makedirs('build/deep', exist_ok=True)",
    "open('build/deep/result.bin', 'wb').write(bytes(range(256)) * 40)",
    "os.symlink('data/out.txt', 'latest')",
  ].join('; ');
  const r = await runTask(srv.url, `python3 -c "${script.replace(/"/g, '\\"')}"`, { workspace: { id } });
  t.match(r.task, { status: 'succeeded' }, r.stderr);

  const a = await archiveOf(id);
  t.equal(a.status, 200);
  t.match(a.type, /^application\/gzip/);
  const byPath = new Map(a.entries.map((e) => [e.path.replace(/\/$/, ''), e]));
  t.equal(byPath.get('data/out.txt')?.content.toString(), '6\n', 'a new file');
  t.equal(byPath.get('main.py')?.content.toString(), 'print("v1")\nprint("v2")\n', 'a changed file');
  t.notOk(byPath.has('old.txt'), 'a deleted file is gone');
  t.same(byPath.get('build/deep/result.bin')?.content, Buffer.from(Array.from({ length: 40 }, () => [...Array(256).keys()]).flat()), 'binary content is exact');
  t.match(byPath.get('build/deep'), { type: 'Directory' });
  t.match(byPath.get('latest'), { type: 'SymbolicLink', linkpath: 'data/out.txt', content: Buffer.alloc(0) }, 'a link is a link entry');
  t.ok(byPath.has('.home'), 'HOME is part of the workspace');

  const f = await getBytes(`${srv.url}/v1/workspaces/${id}/files/data/out.txt`);
  t.equal(f.status, 200);
  t.equal(f.type, 'application/octet-stream');
  t.equal(f.body.toString(), '6\n');
  const bin = await getBytes(`${srv.url}/v1/workspaces/${id}/files/build/deep/result.bin`);
  t.same(bin.body, byPath.get('build/deep/result.bin')!.content);
  const empty = await runTask(srv.url, ': > empty', { workspace: { id } });
  t.match(empty.task, { status: 'succeeded' });
  const e = await getBytes(`${srv.url}/v1/workspaces/${id}/files/empty`);
  t.equal(e.status, 200);
  t.equal(e.body.length, 0, 'an empty file is served empty');
  const ws = (await api(srv.url, 'GET', `/v1/workspaces/${id}`)).json;
  t.match(ws, { files: 6 }, 'the counts are refreshed after each task');
});

t.test('links planted by a task never reveal host files', async (t) => {
  const id = await newWorkspace({ 'a.txt': 'a\n' });
  const plant = [
    'ln -s /etc/passwd passwd',
    'ln -s /etc/shadow shadow',
    `ln -s ${canaryDir}/canary.txt canary`,
    `ln -s ${canaryDir} canarydir`,
    'ln -s ../.. up',
    'ln -s / root',
    'ln -s /etc etc',
    'mkdir real && ln -s ../../../../../../etc/passwd real/deep',
    'mkfifo fifo',
  ].join(' && ');
  const r = await runTask(srv.url, plant, { workspace: { id } });
  t.match(r.task, { status: 'succeeded' }, r.stderr);

  const a = await archiveOf(id);
  t.equal(a.status, 200);
  const links = Object.fromEntries(a.entries.filter((e) => e.type === 'SymbolicLink').map((e) => [e.path, e.linkpath]));
  t.same(links, {
    canary: `${canaryDir}/canary.txt`,
    canarydir: canaryDir,
    etc: '/etc',
    passwd: '/etc/passwd',
    'real/deep': '../../../../../../etc/passwd',
    root: '/',
    shadow: '/etc/shadow',
    up: '../..',
  }, 'every link comes back as a link entry with its target');
  t.ok(a.entries.every((e) => e.type !== 'SymbolicLink' || e.content.length === 0), 'link entries carry no content');
  t.notOk(a.entries.some((e) => e.path === 'fifo'), 'the FIFO is left out');
  t.notOk(a.entries.some((e) => hostSecrets(e.content)), 'no host content in any entry');
  t.notOk(a.entries.some((e) => e.path.startsWith('canarydir/') || e.path.startsWith('etc/') || e.path.startsWith('root/')), 'no link is walked into');

  for (const p of ['passwd', 'shadow', 'canary', 'canarydir/canary.txt', 'up/etc/passwd', 'root/etc/passwd', 'etc/passwd', 'real/deep']) {
    const f = await api(srv.url, 'GET', `/v1/workspaces/${id}/files/${p}`);
    t.equal(f.status, 422, `${p}: refused`);
    t.match(f.json?.error, { code: 'WORKSPACE_FILE_IS_LINK', details: { path: p } });
    t.notOk(hostSecrets(f.text));
  }
  const fifo = await api(srv.url, 'GET', `/v1/workspaces/${id}/files/fifo`);
  t.match([fifo.status, fifo.json?.error.code], [422, 'WORKSPACE_FILE_NOT_REGULAR'], 'a FIFO is refused without hanging');
  const dir = await api(srv.url, 'GET', `/v1/workspaces/${id}/files/real`);
  t.match(dir.json?.error, { code: 'WORKSPACE_FILE_NOT_REGULAR', details: { kind: 'directory' } });
  const missing = await api(srv.url, 'GET', `/v1/workspaces/${id}/files/nope/x`);
  t.match([missing.status, missing.json?.error.code], [404, 'WORKSPACE_FILE_NOT_FOUND']);
  const through = await api(srv.url, 'GET', `/v1/workspaces/${id}/files/a.txt/x`);
  t.match([through.status, through.json?.error.code], [404, 'WORKSPACE_FILE_NOT_FOUND'], 'a path through a file is not found');
  const escape = await api(srv.url, 'GET', `/v1/workspaces/${id}/files/..%2f..%2fetc%2fpasswd`);
  t.match([escape.status, escape.json?.error.code], [422, 'WORKSPACE_PATH_ESCAPE']);
  const abs = await api(srv.url, 'GET', `/v1/workspaces/${id}/files/%2fetc%2fpasswd`);
  t.match([abs.status, abs.json?.error.code], [422, 'WORKSPACE_PATH_ESCAPE']);
  const unknown = await api(srv.url, 'GET', '/v1/workspaces/ws_nope/archive');
  t.match([unknown.status, unknown.json?.error.code], [404, 'WORKSPACE_NOT_FOUND']);
  t.same(mountsUnder(srv.dataDir), [], 'every read-back view was unmounted');
});

t.test('a task swapping a directory for links in a tight loop during read-back gains nothing', async (t) => {
  const id = await newWorkspace({ 'sw/canary.txt': 'safe\n' });
  // Swaps sw/ (a real directory with canary.txt) for links to the host canary dir and to /etc.
  const loop = [
    'while :; do',
    `  rm -rf sw; ln -s ${canaryDir} sw;`,
    '  rm -f sw; mkdir sw; echo safe > sw/canary.txt;',
    '  rm -rf sw; ln -s /etc sw;',
    '  rm -f sw; mkdir sw; echo safe > sw/canary.txt;',
    'done',
  ].join(' ');
  const { id: taskId } = await submit(srv.url, { command: loop, workspace: { id }, timeoutSeconds: 120 });
  for (let i = 0; i < 100 && (await api(srv.url, 'GET', `/v1/tasks/${taskId}`)).json.status !== 'running'; i++) await sleep(100);

  const seen = { ok: 0, link: 0, missing: 0, archives: 0, archiveFiles: 0 };
  for (let round = 0; round < 12; round++) {
    const [a, ...files] = await Promise.all([
      archiveOf(id),
      ...Array.from({ length: 15 }, (_, i) => getBytes(`${srv.url}/v1/workspaces/${id}/files/sw/${i % 3 === 0 ? 'passwd' : 'canary.txt'}`)),
    ]);
    t.equal(a!.status, 200);
    seen.archives += 1;
    for (const e of a!.entries) {
      if (hostSecrets(e.content)) t.fail(`archive entry ${e.path} carries host content`);
      if (e.path === 'sw/canary.txt') seen.archiveFiles += 1;
    }
    for (const f of files) {
      if (hostSecrets(f.body)) t.fail('a file read returned host content');
      const code = f.status === 200 ? 'ok' : JSON.parse(f.body.toString()).error.code;
      if (code === 'ok') {
        t.equal(f.body.toString(), 'safe\n');
        seen.ok += 1;
      } else if (code === 'WORKSPACE_FILE_IS_LINK') seen.link += 1;
      else if (code === 'WORKSPACE_FILE_NOT_FOUND') seen.missing += 1;
      else t.fail(`unexpected answer ${f.status} ${code}`);
    }
  }
  await api(srv.url, 'POST', `/v1/tasks/${taskId}/cancel`);
  const done = await waitDone(srv.url, taskId);
  t.equal(done.status, 'cancelled', 'the swapping task ran until the test stopped it');
  t.ok(seen.link > 0, `the race was real: reads met the link (${JSON.stringify(seen)})`);
  t.ok(seen.archives === 12, 'every archive completed');
  // The views and the workspace are unmounted just after the task is recorded done.
  for (let i = 0; i < 100 && mountsUnder(srv.dataDir).length > 0; i++) await sleep(50);
  t.same(mountsUnder(srv.dataDir), [], 'every view and the workspace are unmounted afterwards');
});

t.test('a client that goes away mid-archive leaves nothing mounted; delete waits for the read to end', async (t) => {
  const id = await newWorkspace({ 'a.txt': 'a\n' });
  const fill = await runTask(srv.url, 'head -c 67108864 /dev/urandom > big', { workspace: { id } });
  t.match(fill.task, { status: 'succeeded' });
  // A plain HTTP client that reads one chunk, stops reading, and later drops the connection.
  const { req, status } = await new Promise<{ req: ClientRequest; status: number }>((resolve, reject) => {
    const r = request(`${srv.url}/v1/workspaces/${id}/archive`, (res) => {
      res.once('data', () => {
        res.pause();
        resolve({ req: r, status: res.statusCode ?? 0 });
      });
    });
    r.on('error', reject);
    r.end();
  });
  t.equal(status, 200, 'the archive started streaming');
  t.ok(mountsUnder(srv.dataDir).length >= 1, 'the workspace is mounted while it is read');
  const busy = await api(srv.url, 'DELETE', `/v1/workspaces/${id}`);
  t.match([busy.status, busy.json?.error.code], [409, 'WORKSPACE_BUSY'], 'delete is refused while the read runs (after a short wait)');
  req.destroy();
  for (let i = 0; i < 100 && mountsUnder(srv.dataDir).length > 0; i++) await sleep(100);
  t.same(mountsUnder(srv.dataDir), [], 'the view and the workspace were unmounted after the client left');
  t.equal((await api(srv.url, 'DELETE', `/v1/workspaces/${id}`)).status, 204, 'and the workspace can be deleted');
});

t.test('a client that stops reading is cut off after workspaces.readbackIdleSeconds', async (t) => {
  const idle = await startTestServer({ workspaces: { readbackIdleSeconds: 1 } });
  t.teardown(() => idle.close());
  const id = (await api(idle.url, 'POST', '/v1/workspaces', { files: { 'a.txt': 'a\n' } })).json.id as string;
  t.match((await runTask(idle.url, 'head -c 67108864 /dev/urandom > big', { workspace: { id } })).task, { status: 'succeeded' });
  // Takes one chunk, then nothing, and never closes (a paused client cannot even see the drop).
  let started = false;
  const req = request(`${idle.url}/v1/workspaces/${id}/files/big`, (res) => {
    res.once('data', () => {
      started = true;
      res.pause();
    });
    res.on('error', () => undefined);
  });
  req.on('error', () => undefined);
  req.end();
  for (let i = 0; i < 100 && !started; i++) await sleep(100);
  t.ok(started, 'the file started streaming');
  for (let i = 0; i < 100 && mountsUnder(idle.dataDir).length > 0; i++) await sleep(100);
  t.same(mountsUnder(idle.dataDir), [], 'the server dropped the stalled read: the workspace is no longer held');
  t.equal((await api(idle.url, 'DELETE', `/v1/workspaces/${id}`)).status, 204);
  req.destroy();
});
