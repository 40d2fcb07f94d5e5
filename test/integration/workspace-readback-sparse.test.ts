import t from 'tap';
import { readTarGz } from '../helpers/archive.js';
import { api, runTask } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

/**
 * A task can make files that claim far more than the workspace holds (sparse files). Read-back
 * never sends more file bytes than the workspace's quota (16 MiB here): one file above it is
 * 422 WORKSPACE_FILE_TOO_LARGE, and the archive leaves such files out and lists them.
 */
const MiB = 1024 * 1024;
const srv = await startTestServer({ workspaces: { quotaMb: 16 } });
t.teardown(() => srv.close());

const run = await runTask(srv.url, 'truncate -s 100G f && truncate -s 10M a && truncate -s 10M b && echo hi > small.txt && ls -ls');
const ws = run.task.workspaceId as string;

t.test('the task made the sparse files', async (t) => {
  t.equal(run.task.status, 'succeeded', run.stderr);
});

t.test('GET …/files/f of a 100 GB sparse file is 422 WORKSPACE_FILE_TOO_LARGE', async (t) => {
  const r = await api(srv.url, 'GET', `/v1/workspaces/${ws}/files/f`);
  t.equal(r.status, 422, r.text.slice(0, 300));
  t.equal(r.json?.error?.code, 'WORKSPACE_FILE_TOO_LARGE');
  t.match(r.json?.error?.details, { path: 'f', size: 100 * 1024 * MiB, limit: 16 * MiB });
  const small = await api(srv.url, 'GET', `/v1/workspaces/${ws}/files/small.txt`);
  t.equal(small.status, 200);
  t.equal(small.text, 'hi\n');
  const a = await fetch(`${srv.url}/v1/workspaces/${ws}/files/a`);
  t.equal(a.status, 200, 'a file within the quota is sent');
  t.equal(a.headers.get('content-length'), String(10 * MiB));
  t.equal((await a.arrayBuffer()).byteLength, 10 * MiB);
});

t.test('GET …/archive leaves out what would pass the quota and says so', async (t) => {
  const res = await fetch(`${srv.url}/v1/workspaces/${ws}/archive`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-sandboxshift-omitted'), '2', 'the header counts the files left out');
  const entries = await readTarGz(Buffer.from(await res.arrayBuffer()));
  const names = entries.map((e) => e.path);
  t.ok(names.includes('a') && names.includes('small.txt'), 'what fits is there');
  t.notOk(names.includes('f'), 'the 100 GB file is left out');
  t.notOk(names.includes('b'), 'the file that would take the total past the quota is left out');
  const sent = entries.filter((e) => e.type === 'File' && e.path !== '.sandboxshift-omitted.txt').reduce((n, e) => n + e.content.length, 0);
  t.ok(sent <= 16 * MiB, `file bytes sent (${sent}) within the quota`);
  const last = entries[entries.length - 1]!;
  t.equal(last.path, '.sandboxshift-omitted.txt', 'the last entry lists them');
  t.equal(last.content.toString(), `total_over_quota\t${10 * MiB}\tb\nlarger_than_quota\t${100 * 1024 * MiB}\tf\n`);
});
