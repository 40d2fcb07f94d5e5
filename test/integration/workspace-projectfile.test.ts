import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tgz } from '../helpers/archives.js';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());

const withFile = async (yaml: string, extra: Record<string, string> = {}) => {
  const r = await api(srv.url, 'POST', '/v1/workspaces', { files: { 'sandboxshift.yaml': yaml, ...extra } });
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${r.text}`);
  return r.json.id as string;
};

t.test('each key of sandboxshift.yaml becomes a task default', async (t) => {
  const id = await withFile(
    ['sandbox:', '  timeout: 2', '  setup: cd sub && export FROM_SETUP=yes', 'resources:', '  cpu: 0.5', '  memory: 256MB', 'env:', '  FOO: bar', '  N: 7'].join('\n'),
    { 'sub/here.txt': 'in sub\n' },
  );
  const r = await runTask(srv.url, 'pwd; cat here.txt; echo "$FROM_SETUP $FOO $N"', { workspace: { id } });
  t.match(r.task, {
    status: 'succeeded',
    command: 'pwd; cat here.txt; echo "$FROM_SETUP $FOO $N"',
    setup: 'cd sub && export FROM_SETUP=yes',
    timeoutSeconds: 2,
    resources: { cpus: 0.5, memoryMb: 256 },
    envKeys: ['FOO', 'N'],
  });
  t.same([...r.task.fromProjectFile].sort(), ['env', 'resources.cpu', 'resources.memory', 'sandbox.setup', 'sandbox.timeout']);
  t.equal(r.stdout, '/workspace/sub\nin sub\nyes bar 7\n', 'setup ran first, in the same shell (cd and export carry over)');
  const slow = await runTask(srv.url, 'sleep 20', { workspace: { id } });
  t.match(slow.task, { status: 'timed_out', reason: 'timeout' }, 'sandbox.timeout is in seconds');
});

t.test('the request overrides the file', async (t) => {
  const id = await withFile('sandbox: {timeout: 2}\nresources: {cpu: 0.5, memory: 4GB}\nenv: {FOO: file, KEEP: file}\n');
  const r = await runTask(srv.url, 'echo "$FOO $KEEP"; sleep 3', {
    workspace: { id },
    timeoutSeconds: 30,
    resources: { memoryMb: 128, cpus: 1 },
    env: { FOO: 'request' },
  });
  t.match(r.task, { status: 'succeeded', timeoutSeconds: 30, resources: { cpus: 1, memoryMb: 128 } });
  t.equal(r.stdout, 'request file\n', 'env keys merge; the request wins per key');
  t.same(r.task.fromProjectFile, ['env']);
  const four = await submit(srv.url, { command: 'true', workspace: { id } });
  t.match(await waitDone(srv.url, four.id), { resources: { memoryMb: 4096 } }, '"4GB" is 4096 MB');
});

t.test('a file value above a server maximum is refused, naming the key and the bound', async (t) => {
  const id = await withFile('resources:\n  memory: 8GB\n');
  const r = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', workspace: { id } });
  t.equal(r.status, 422);
  t.match(r.json.error, { code: 'LIMIT_ABOVE_MAXIMUM', details: { field: 'resources.memory', source: 'sandboxshift.yaml', value: 8192, maximum: 4096 } });
  t.match(r.json.error.message, /sandboxshift\.yaml: resources\.memory/);
  const over = await runTask(srv.url, 'true', { workspace: { id }, resources: { memoryMb: 512 } });
  t.match(over.task, { status: 'succeeded', resources: { memoryMb: 512 } }, 'a request value replaces it');
  const t2 = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', workspace: { id: await withFile('sandbox: {timeout: 99999}') } });
  t.match(t2.json.error, { code: 'LIMIT_ABOVE_MAXIMUM', details: { field: 'sandbox.timeout', maximum: 3600 } });
});

t.test('a failing setup stops the command', async (t) => {
  const id = await withFile('sandbox:\n  setup: echo setting-up; false\n');
  const r = await runTask(srv.url, 'echo command-ran', { workspace: { id } });
  t.match(r.task, { status: 'failed', exitCode: 1 });
  t.equal(r.stdout, 'setting-up\n');
});

t.test('workspace.readonly and network.allow from the file', async (t) => {
  const ro = await withFile('workspace:\n  readonly: true\n');
  const r = await runTask(srv.url, 'touch x', { workspace: { id: ro } });
  t.match(r.task, { status: 'failed', workspaceReadonly: true });
  t.match(r.stderr, /Read-only file system/);
  const rw = await runTask(srv.url, 'touch x', { workspace: { id: ro, readonly: false } });
  t.match(rw.task, { status: 'succeeded', workspaceReadonly: false }, 'the request overrides readonly');

  // The file's list is the workspace's egress allowlist (no traffic is sent: the task runs `true`).
  const net = await withFile('network:\n  allow: [api.example.com, "*.example.org"]\n');
  const n = await runTask(srv.url, 'true', { workspace: { id: net } });
  t.match(n.task, { status: 'succeeded', network: { allow: ['api.example.com', '*.example.org'], unrestricted: false } }, 'the file list is the allowlist');
  t.ok(n.task.fromProjectFile.includes('network.allow'));
  const none = await runTask(srv.url, 'true', { workspace: { id: net }, network: { allow: [] } });
  t.match(none.task, { status: 'succeeded', network: { allow: [] } }, 'the request list (even empty) replaces the file list');
  const broad = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', workspace: { id: await withFile('network: {allow: ["*.com"]}') } });
  t.match([broad.status, broad.json.error.code, broad.json.error.details.source], [422, 'EGRESS_PATTERN_TOO_BROAD', 'workspace'], 'the file list is judged like the request list');
});

t.test('inline-file tasks read the file too', async (t) => {
  const r = await runTask(srv.url, 'echo "$X"', { workspace: { files: { 'sandboxshift.yaml': 'env: {X: inline}\nsandbox: {timeout: 5}' } } });
  t.match(r.task, { status: 'succeeded', timeoutSeconds: 5 });
  t.equal(r.stdout, 'inline\n');
});

t.test('malformed, oversized or planted files are refused with what is wrong', async (t) => {
  const bad = async (yaml: string, code: string, detail: Record<string, unknown>) => {
    const r = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', workspace: { id: await withFile(yaml) } });
    t.match([r.status, r.json.error.code], [code === 'PROJECT_FILE_TOO_LARGE' ? 413 : 422, code]);
    t.match(r.json.error.details, detail);
  };
  await bad('sandbox: [unclosed', 'PROJECT_FILE_INVALID', { file: 'sandboxshift.yaml', problem: /not valid YAML/ });
  await bad('resources:\n  memory: lots\n', 'PROJECT_FILE_INVALID', { key: 'resources.memory', problem: /4GB/ });
  await bad('sandbox:\n  timeot: 5\n', 'PROJECT_FILE_INVALID', { key: 'sandbox', problem: /timeot/ });
  await bad(`env:\n${Array.from({ length: 3000 }, (_, i) => `  V${i}: ${'x'.repeat(20)}`).join('\n')}\n`, 'PROJECT_FILE_TOO_LARGE', { limit: 65536 });
  const inline = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', workspace: { files: { 'sandboxshift.yaml': 'nope: 1' } } });
  t.match(inline.json.error, { code: 'PROJECT_FILE_INVALID', details: { problem: /nope/ } });

  // A task replaces the file with a link to a host file, or with a FIFO.
  const id = await withFile('env: {A: b}\n');
  t.match((await runTask(srv.url, 'rm sandboxshift.yaml && ln -s /etc/passwd sandboxshift.yaml', { workspace: { id } })).task, { status: 'succeeded' });
  const link = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', workspace: { id } });
  t.match(link.json.error, { code: 'PROJECT_FILE_INVALID', details: { problem: /symbolic link/ } });
  t.notMatch(link.text, /root:/);
  const fid = await withFile('env: {A: b}\n');
  await runTask(srv.url, 'rm sandboxshift.yaml && mkfifo sandboxshift.yaml', { workspace: { id: fid } });
  const fifo = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', workspace: { id: fid } });
  t.match(fifo.json.error, { code: 'PROJECT_FILE_INVALID', details: { problem: /not a regular file/ } }, 'a FIFO does not hang the submit');
});

t.test("one-shot multipart tasks: the archive's sandboxshift.yaml applies, and a bad one is refused before anything is kept", async (t) => {
  const post = (files: Record<string, string>, task: Record<string, unknown>) => {
    const form = new FormData();
    form.append('task', JSON.stringify(task));
    form.append('workspace', new Blob([tgz(Object.entries(files).map(([name, data]) => ({ name, data })))], { type: 'application/gzip' }), 'ws.tgz');
    return fetch(`${srv.url}/v1/tasks`, { method: 'POST', body: form }).then(async (r) => ({ status: r.status, json: (await r.json()) as any }));
  };
  const images = () => readdirSync(join(srv.dataDir, 'workspaces')).filter((n) => n.endsWith('.img')).length;
  const ok = await post({ 'sandboxshift.yaml': 'env: {FROM_FILE: yes}\nsandbox: {setup: "echo setup"}\n' }, { command: 'echo "$FROM_FILE"' });
  t.equal(ok.status, 202, JSON.stringify(ok.json));
  const done = await waitDone(srv.url, ok.json.id);
  t.match(done, { status: 'succeeded', setup: 'echo setup' });
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${ok.json.id}/logs?stream=stdout`)).text, 'setup\nyes\n');
  const before = images();
  const bad = await post({ 'sandboxshift.yaml': 'resources: {memory: lots}\n' }, { command: 'true' });
  t.match([bad.status, bad.json.error.code, bad.json.error.details.key], [422, 'PROJECT_FILE_INVALID', 'resources.memory']);
  const big = await post({ 'sandboxshift.yaml': 'resources: {memory: 64GB}\n' }, { command: 'true' });
  t.match([big.status, big.json.error.code, big.json.error.details.field], [422, 'LIMIT_ABOVE_MAXIMUM', 'resources.memory']);
  t.equal(images(), before, 'no workspace was kept for the refused tasks');
});
