import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DEFAULT_IMAGES } from '../../src/config/schema.js';
import { tar, tgz, zip } from '../helpers/archives.js';
import { api, runTask, waitDone } from '../helpers/client.js';
import { leftovers, upload, workspaceRecords } from '../helpers/intake.js';
import { startTestServer } from '../helpers/server.js';

// One extra language whose image is never built: a task that needs it is refused with IMAGE_MISSING.
const srv = await startTestServer({
  images: {
    ...DEFAULT_IMAGES,
    languages: { ...DEFAULT_IMAGES.languages, ruby: { image: 'sandboxshift/runtime-absent-intake-test:0', build: 'none' } },
    markers: { ...DEFAULT_IMAGES.markers, Gemfile: 'ruby' },
  },
});
t.teardown(() => srv.close());
const wsDir = (id: string) => join(srv.dataDir, 'workspaces', id);

t.test('a tar: setuid/setgid/sticky stripped, every entry owned by 65532, links kept inside', async (t) => {
  const body = tar([
    { name: 'bin/', type: '5', mode: 0o1777, uid: 0, gid: 0 },
    { name: 'bin/suid', data: '#!/bin/sh\necho hi\n', mode: 0o4755, uid: 0, gid: 0 },
    { name: 'bin/sgid', data: 'x', mode: 0o2711, uid: 1234, gid: 1234 },
    { name: 'notes.txt', data: 'hello\n', mode: 0o644 },
    { name: 'link-to-notes', type: '2', linkname: 'notes.txt' },
    { name: 'bin/up', type: '2', linkname: '../notes.txt' },
    { name: 'hard', type: '1', linkname: 'notes.txt' },
  ]);
  const r = await upload(srv.url, body, 'application/x-tar');
  t.equal(r.status, 201, r.text);
  t.match(r.json, { id: /^ws_/, files: 4, bytes: 6 + 6 + 18 + 1 });
  const dir = wsDir(r.json.id);
  for (const p of ['bin', 'bin/suid', 'bin/sgid', 'notes.txt', 'hard']) {
    const st = lstatSync(join(dir, p));
    t.equal(st.mode & 0o7000, 0, `${p}: no setuid, setgid or sticky bit`);
    t.equal(st.uid, 65532, `${p}: owner 65532`);
    t.equal(st.gid, 65532, `${p}: group 65532`);
  }
  t.equal(lstatSync(join(dir, 'bin/suid')).mode & 0o777, 0o755, 'the permission bits themselves are kept');
  t.ok(lstatSync(join(dir, 'link-to-notes')).isSymbolicLink());
  t.equal(lstatSync(join(dir, 'link-to-notes')).uid, 65532, 'links belong to 65532 too');
  t.equal(readlinkSync(join(dir, 'bin/up')), '../notes.txt');
  t.equal(lstatSync(join(dir, 'hard')).ino, lstatSync(join(dir, 'notes.txt')).ino, 'a hardlink inside the archive is a hardlink');
  const got = await api(srv.url, 'GET', `/v1/workspaces/${r.json.id}`);
  t.same(got.json, r.json, 'GET returns the created workspace');
  t.same(leftovers(srv.dataDir).filter((p) => p.startsWith('tmp/')), [], 'no spool files');
});

t.test('the type comes from the content: octet-stream tar.gz and zip are recognised', async (t) => {
  const a = await upload(srv.url, tgz([{ name: 'package.json', data: '{}' }]), 'application/octet-stream');
  t.equal(a.status, 201, a.text);
  t.same(a.json.image, { name: 'sandboxshift/runtime-node:20', markers: ['package.json'] }, 'markers detected from the archive');
  const b = await upload(srv.url, zip([{ name: 'd/', mode: 0o40755 }, { name: 'd/x.txt', data: 'zip' }]), 'application/octet-stream');
  t.equal(b.status, 201, b.text);
  t.equal(readFileSync(join(wsDir(b.json.id), 'd/x.txt'), 'utf8'), 'zip');
  const c = await upload(srv.url, tgz([{ name: 'a', data: 'x' }]), 'application/x-gzip');
  t.equal(c.status, 201, 'application/x-gzip is accepted too');
});

/** A small Python project: reads its input, writes a result, prints a summary. */
const project = {
  'requirements.txt': '',
  'main.py': [
    'import json, pathlib',
    'words = pathlib.Path("data/input.txt").read_text().split()',
    'pathlib.Path("out").mkdir(exist_ok=True)',
    'pathlib.Path("out/result.json").write_text(json.dumps({"count": len(words)}))',
    'pathlib.Path("data/input.txt").write_text(" ".join(reversed(words)))',
    'print("counted", len(words))',
  ].join('\n'),
  'data/input.txt': 'alpha beta gamma delta',
};

for (const [kind, build, type] of [
  ['tar.gz', () => tgz(Object.entries(project).map(([name, data]) => ({ name, data }))), 'application/gzip'],
  ['zip', () => zip(Object.entries(project).map(([name, data]) => ({ name, data }))), 'application/zip'],
] as const) {
  t.test(`round trip: a ${kind} of a Python project, a task reads and writes it, the changes are on disk`, async (t) => {
    const r = await upload(srv.url, build(), type);
    t.equal(r.status, 201, r.text);
    t.same(r.json.image, { name: 'sandboxshift/runtime-python:3.11', markers: ['requirements.txt'] });
    const run = await runTask(srv.url, 'python3 main.py && cat out/result.json', { workspace: { id: r.json.id } });
    t.equal(run.task.status, 'succeeded', run.stderr);
    t.equal(run.stdout, 'counted 4\n{"count": 4}');
    const dir = wsDir(r.json.id);
    t.equal(readFileSync(join(dir, 'data/input.txt'), 'utf8'), 'delta gamma beta alpha', 'the task changed a file in place');
    t.same(JSON.parse(readFileSync(join(dir, 'out/result.json'), 'utf8')), { count: 4 }, 'and created one');
    const again = await runTask(srv.url, 'cat data/input.txt', { workspace: { id: r.json.id } });
    t.equal(again.stdout, 'delta gamma beta alpha', 'a later task sees the changes');
  });
}

t.test('multipart POST /v1/tasks: a task part and a workspace archive part', async (t) => {
  const form = new FormData();
  form.append('task', JSON.stringify({ command: 'python3 main.py' }));
  form.append('workspace', new Blob([tgz(Object.entries(project).map(([name, data]) => ({ name, data })))], { type: 'application/gzip' }), 'project.tgz');
  const res = await fetch(`${srv.url}/v1/tasks`, { method: 'POST', body: form });
  const json = (await res.json()) as any;
  t.equal(res.status, 202, JSON.stringify(json));
  t.match(json, { id: /^tsk_/, status: 'queued', workspaceId: /^ws_/, image: { name: 'sandboxshift/runtime-python:3.11', markers: ['requirements.txt'] } });
  const task = await waitDone(srv.url, json.id);
  t.equal(task.status, 'succeeded');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${json.id}/logs?stream=stdout`)).text, 'counted 4\n');
  t.equal(readFileSync(join(wsDir(json.workspaceId), 'out/result.json'), 'utf8'), '{"count": 4}');
});

t.test('multipart refusals create nothing', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  const beforeDirs = leftovers(srv.dataDir);
  const post = async (form: FormData) => {
    const res = await fetch(`${srv.url}/v1/tasks`, { method: 'POST', body: form });
    return { status: res.status, json: (await res.json()) as any };
  };
  const archive = new Blob([tar([{ name: 'a', data: 'x' }])], { type: 'application/x-tar' });

  const noTask = new FormData();
  noTask.append('workspace', archive, 'a.tar');
  let r = await post(noTask);
  t.equal(r.status, 400);
  t.match(r.json.error, { code: 'MULTIPART_INVALID', details: { rule: 'task_part_first' } });

  const named = new FormData();
  named.append('task', JSON.stringify({ command: 'true', workspace: { id: 'ws_x' } }));
  named.append('workspace', archive, 'a.tar');
  r = await post(named);
  t.match(r.json.error, { code: 'MULTIPART_INVALID', details: { rule: 'task_names_a_workspace' } });

  const badJson = new FormData();
  badJson.append('task', '{"command":');
  badJson.append('workspace', archive, 'a.tar');
  r = await post(badJson);
  t.equal(r.status, 400);
  t.equal(r.json.error.code, 'MALFORMED_JSON');

  const tooLong = new FormData();
  tooLong.append('task', JSON.stringify({ command: 'true', timeoutSeconds: 999999 }));
  tooLong.append('workspace', archive, 'a.tar');
  r = await post(tooLong);
  t.equal(r.status, 422);
  t.equal(r.json.error.code, 'LIMIT_ABOVE_MAXIMUM', 'the task is checked before the archive is read');

  const hostile = new FormData();
  hostile.append('task', JSON.stringify({ command: 'true' }));
  hostile.append('workspace', new Blob([tar([{ name: 'x', type: '2', linkname: '/etc' }])], { type: 'application/x-tar' }), 'h.tar');
  r = await post(hostile);
  t.equal(r.status, 422);
  t.match(r.json.error, { code: 'WORKSPACE_LINK_ESCAPE', details: { entry: 'x', rule: 'symlink_absolute' } });

  const ambiguous = new FormData();
  ambiguous.append('task', JSON.stringify({ command: 'true', image: 'no/such:image' }));
  ambiguous.append('workspace', archive, 'a.tar');
  r = await post(ambiguous);
  t.equal(r.status, 422);
  t.equal(r.json.error.code, 'IMAGE_UNKNOWN', 'an image refused after extraction removes the extracted files');

  const missing = new FormData();
  missing.append('task', JSON.stringify({ command: 'true' }));
  missing.append('workspace', new Blob([tar([{ name: 'Gemfile', data: '' }])], { type: 'application/x-tar' }), 'rb.tar');
  r = await post(missing);
  t.equal(r.status, 422);
  t.match(r.json.error, { code: 'IMAGE_MISSING', details: { image: 'sandboxshift/runtime-absent-intake-test:0' } }, 'an image detected from the archive but absent: refused before the workspace is recorded');

  const wrongType = new FormData();
  wrongType.append('task', JSON.stringify({ command: 'true' }));
  wrongType.append('workspace', new Blob(['hello'], { type: 'text/plain' }), 'a.txt');
  r = await post(wrongType);
  t.equal(r.status, 415);

  t.equal(workspaceRecords(srv.dataDir), before, 'no workspace record from any refusal');
  t.same(leftovers(srv.dataDir), beforeDirs, 'no directory or spool file from any refusal');
});

t.test('multipart is not a workspace body; JSON inline files still work', async (t) => {
  const form = new FormData();
  form.append('task', '{}');
  const res = await fetch(`${srv.url}/v1/workspaces`, { method: 'POST', body: form });
  t.equal(res.status, 415);
  const inline = await api(srv.url, 'POST', '/v1/workspaces', { files: { 'a.txt': 'x' } });
  t.equal(inline.status, 201);
});
