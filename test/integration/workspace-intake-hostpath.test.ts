import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { api } from '../helpers/client.js';
import { canary, leftovers, workspaceRecords } from '../helpers/intake.js';
import { startTestServer } from '../helpers/server.js';

/** Workspaces copied from a host root the operator configured. */
const base = mkdtempSync(join(tmpdir(), 'sbx-hostroot-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));
const projects = join(base, 'projects');
const secret = canary();
writeFileSync(join(secret.dir, 'secret.txt'), 'host secret\n');
mkdirSync(join(projects, 'app', 'src'), { recursive: true });
writeFileSync(join(projects, 'app', 'package.json'), '{"name":"app"}');
writeFileSync(join(projects, 'app', 'src', 'index.js'), 'console.log(1)\n');
writeFileSync(join(projects, 'app', 'run.sh'), '#!/bin/sh\n');
chmodSync(join(projects, 'app', 'run.sh'), 0o4755);
symlinkSync('src/index.js', join(projects, 'app', 'main.js'));
// Escapes: a link to a directory outside the root, and a project holding a link out.
symlinkSync(secret.dir, join(projects, 'outside'));
mkdirSync(join(projects, 'leaky'));
symlinkSync(join(secret.dir, 'secret.txt'), join(projects, 'leaky', 'secret.txt'));
mkdirSync(join(projects, 'fifo'));
execFileSync('mkfifo', [join(projects, 'fifo', 'pipe')]);
mkdirSync(join(projects, 'sock'));

const srv = await startTestServer({ workspaces: { hostRoots: { projects } } });
t.teardown(() => srv.close());
const create = (hostPath: string) => api(srv.url, 'POST', '/v1/workspaces', { hostPath });
const wsPath = (id: string, p: string) => join(srv.dataDir, 'workspaces', id, p);

t.test('a hostPath workspace is a copy: files, links kept as links, modes normalised', async (t) => {
  const r = await create('projects/app');
  t.equal(r.status, 201, r.text);
  t.match(r.json, { files: 3, image: { name: 'sandboxshift/runtime-node:20', markers: ['package.json'] } });
  t.equal(readFileSync(wsPath(r.json.id, 'src/index.js'), 'utf8'), 'console.log(1)\n');
  t.equal(readlinkSync(wsPath(r.json.id, 'main.js')), 'src/index.js');
  const st = lstatSync(wsPath(r.json.id, 'run.sh'));
  t.equal(st.mode & 0o7777, 0o755, 'setuid stripped');
  t.equal(st.uid, 65532);
  writeFileSync(wsPath(r.json.id, 'src/index.js'), 'changed');
  t.equal(readFileSync(join(projects, 'app', 'src', 'index.js'), 'utf8'), 'console.log(1)\n', 'the host copy is untouched by changes to the workspace');
});

t.test('refused: escapes via .. and via a symlink, links out, special files, unknown roots', async (t) => {
  const server = createServer();
  await new Promise<void>((r) => server.listen(join(projects, 'sock', 'api.sock'), r));
  t.teardown(() => server.close());
  const before = workspaceRecords(srv.dataDir);
  const cases: [string, number, string, Record<string, unknown>][] = [
    ['projects/../../etc', 422, 'WORKSPACE_PATH_ESCAPE', { rule: 'dot_dot' }],
    ['projects/app/../../../etc', 422, 'WORKSPACE_PATH_ESCAPE', { rule: 'dot_dot' }],
    ['projects/outside', 422, 'WORKSPACE_PATH_ESCAPE', { rule: 'symlink_in_host_path', component: 'outside' }],
    ['/etc', 422, 'WORKSPACE_PATH_ESCAPE', { rule: 'absolute' }],
    ['projects/leaky', 422, 'WORKSPACE_LINK_ESCAPE', { entry: 'secret.txt', rule: 'symlink_absolute' }],
    ['projects/fifo', 422, 'WORKSPACE_SPECIAL_FILE', { entry: 'pipe', rule: 'fifo' }],
    ['projects/sock', 422, 'WORKSPACE_SPECIAL_FILE', { entry: 'api.sock', rule: 'socket' }],
    ['projects/app/package.json', 404, 'HOST_PATH_NOT_FOUND', { rule: 'not_a_directory' }],
    ['projects/nothing-here', 404, 'HOST_PATH_NOT_FOUND', {}],
    ['elsewhere/app', 404, 'HOST_PATH_NOT_FOUND', { rule: 'unknown_root', roots: ['projects'] }],
  ];
  for (const [hostPath, status, code, details] of cases) {
    const r = await create(hostPath);
    t.equal(r.status, status, `${hostPath} → ${status} (${r.text.slice(0, 300)})`);
    t.equal(r.json?.error?.code, code);
    t.match(r.json?.error?.details, details);
  }
  t.equal(workspaceRecords(srv.dataDir), before, 'no workspace record');
  t.same(secret.entries(), ['secret.txt'], 'the directory outside the root is untouched');
  const dirs = leftovers(srv.dataDir).filter((p) => p.startsWith('workspaces/'));
  t.equal(dirs.length, before, 'no workspace directory beyond the one created above');
});

t.test('a server without host roots refuses every hostPath', async (t) => {
  const bare = await startTestServer();
  t.teardown(() => bare.close());
  const r = await api(bare.url, 'POST', '/v1/workspaces', { hostPath: 'projects/app' });
  t.equal(r.status, 404);
  t.match(r.json.error, { code: 'HOST_PATH_NOT_FOUND', details: { rule: 'unknown_root', roots: [] } });
});
