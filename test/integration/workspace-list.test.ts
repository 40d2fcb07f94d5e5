// GET /v1/workspaces: newest first, paged with a cursor, bounded by requests.listLimit; the CLI's
// `workspaces list` and the client's listWorkspaces() read it.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import t from 'tap';
import { SandboxShiftClient } from '../../src/client/index.js';
import { installDir } from '../../src/paths.js';
import { api } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ requests: { listLimit: 50 } });
t.teardown(() => srv.close());

const ids: string[] = [];
for (let i = 0; i < 3; i++) {
  const r = await api(srv.url, 'POST', '/v1/workspaces', { files: { [`f${i}.txt`]: `${i}\n` } });
  ids.push(r.json.id as string);
  await new Promise((r) => setTimeout(r, 5)); // distinct createdAt
}

t.test('pages newest first, every workspace exactly once', async (t) => {
  const first = await api(srv.url, 'GET', '/v1/workspaces?limit=2');
  t.equal(first.status, 200, first.text);
  t.same(first.json.workspaces.map((w: { id: string }) => w.id), [ids[2], ids[1]]);
  t.type(first.json.nextCursor, 'string');
  t.match(first.json.workspaces[0], { files: 1, ephemeral: false, image: { name: 'sandboxshift/runtime-python:3.11' } });
  const second = await api(srv.url, 'GET', `/v1/workspaces?limit=2&cursor=${first.json.nextCursor}`);
  t.same(second.json.workspaces.map((w: { id: string }) => w.id), [ids[0]]);
  t.equal(second.json.nextCursor, null, 'the last page');
});

t.test('bounds and bad input', async (t) => {
  const big = await api(srv.url, 'GET', '/v1/workspaces?limit=51');
  t.equal(big.status, 422);
  t.equal(big.json.error.code, 'LIMIT_ABOVE_MAXIMUM');
  const cursor = await api(srv.url, 'GET', '/v1/workspaces?cursor=bm90LWEtY3Vyc29y');
  t.equal(cursor.status, 400);
  t.equal(cursor.json.error.code, 'VALIDATION_FAILED');
  const unknown = await api(srv.url, 'GET', '/v1/workspaces?owner=x');
  t.equal(unknown.status, 400);
});

t.test('the client and the CLI list them', async (t) => {
  const page = await new SandboxShiftClient({ url: srv.url }).listWorkspaces({ limit: 3 });
  t.same(page.workspaces.map((w) => w.id), [ids[2], ids[1], ids[0]]);
  // The server runs in this process: the CLI child must not block its event loop (no spawnSync).
  const cli = (...args: string[]) => promisify(execFile)(process.execPath, [join(installDir(), 'dist', 'src', 'cli.js'), '--url', srv.url, ...args], { encoding: 'utf8', timeout: 30_000 });
  const json = await cli('workspaces', 'list', '--json');
  t.same(JSON.parse(json.stdout).workspaces.map((w: { id: string }) => w.id), [ids[2], ids[1], ids[0]]);
  const table = await cli('workspaces', 'list');
  t.match(table.stdout, new RegExp(`^ID .*\\n${ids[2]} `));
});
