import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { api } from '../helpers/client.js';
import { git, serveGit } from '../helpers/git-server.js';
import { hostProcesses } from '../helpers/host.js';
import { leftovers, lstatOrNull, workspaceRecords } from '../helpers/intake.js';
import { startTestServer } from '../helpers/server.js';

/**
 * Git workspaces from repositories this test serves itself on loopback (`git http-backend`
 * behind a small node http server). Host names map to loopback through the config's test-only
 * resolver table; the one "private" name maps to an address that is refused before any
 * connection is attempted.
 */
const root = mkdtempSync(join(tmpdir(), 'sbx-git-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

function makeRepo(name: string, build: (work: string) => void): void {
  const work = join(root, `${name}-work`);
  mkdirSync(work);
  git(work, 'init', '-q');
  build(work);
  git(root, 'clone', '-q', '--bare', work, `${name}.git`);
}

let firstCommit = '';
makeRepo('proj', (w) => {
  writeFileSync(join(w, 'README'), 'version 1\n');
  writeFileSync(join(w, 'requirements.txt'), '');
  git(w, 'add', '.');
  git(w, 'commit', '-q', '-m', 'one');
  git(w, 'tag', 'v1');
  firstCommit = git(w, 'rev-parse', 'HEAD');
  writeFileSync(join(w, 'README'), 'version 2\n');
  mkdirSync(join(w, 'src'));
  writeFileSync(join(w, 'src', 'app.py'), 'print("hi")\n');
  symlinkSync('src/app.py', join(w, 'app-link'));
  git(w, 'add', '.');
  git(w, 'commit', '-q', '-m', 'two');
  git(w, 'checkout', '-q', '-b', 'feature');
  writeFileSync(join(w, 'feature.txt'), 'feature\n');
  git(w, 'add', '.');
  git(w, 'commit', '-q', '-m', 'three');
  git(w, 'checkout', '-q', 'main');
});
makeRepo('evil', (w) => {
  symlinkSync('/etc/passwd', join(w, 'passwd'));
  git(w, 'add', '.');
  git(w, 'commit', '-q', '-m', 'link out');
});
makeRepo('big', (w) => {
  writeFileSync(join(w, 'blob.bin'), randomBytes(2 * 1024 * 1024));
  git(w, 'add', '.');
  git(w, 'commit', '-q', '-m', 'big');
});

const repos = await serveGit(root);
t.teardown(() => repos.close());
// A server that accepts and never answers: the clone must be killed at the time limit.
const stalled: Server = createServer(() => undefined);
await new Promise<void>((r) => stalled.listen(0, '127.0.0.1', r));
const stalledPort = (stalled.address() as AddressInfo).port;
t.teardown(() => {
  stalled.closeAllConnections();
  stalled.close();
});

const srv = await startTestServer({
  workspaces: {
    git: {
      allowedHosts: ['git.test', 'slow.test', 'private.test'],
      plainHttpHosts: ['git.test', 'slow.test', 'private.test'],
      ports: [repos.port, stalledPort, 443],
      timeoutSeconds: 6,
      maxBytes: 1024 * 1024,
    },
  },
  egress: {
    testHosts: { 'git.test': ['127.0.0.1'], 'slow.test': ['127.0.0.1'], 'private.test': ['10.9.8.7'], 'other.test': ['127.0.0.1'] },
    allowPrivateRanges: ['127.0.0.1/32'],
  },
});
t.teardown(() => srv.close());
// git runs as UID 65532 under <dataDir>/tmp: the data directory must be traversable, as the
// server creates it (0711); the test helper's mkdtemp made it 0700.
chmodSync(srv.dataDir, 0o711);

const url = (repo: string, host = 'git.test', port = repos.port) => `http://${host}:${port}/${repo}.git`;
const create = (body: unknown) => api(srv.url, 'POST', '/v1/workspaces', body);
const wsFile = (id: string, p: string) => readFileSync(join(srv.dataDir, 'workspaces', id, p), 'utf8');

t.test('a branch: the tip of main, links inside kept as links, markers detected', async (t) => {
  const r = await create({ git: { url: url('proj'), ref: 'main' } });
  t.equal(r.status, 201, r.text);
  t.same(r.json.image, { name: 'sandboxshift/runtime-python:3.11', markers: ['requirements.txt'] });
  t.equal(wsFile(r.json.id, 'README'), 'version 2\n');
  t.equal(wsFile(r.json.id, 'src/app.py'), 'print("hi")\n');
  t.ok(lstatOrNull(join(srv.dataDir, 'workspaces', r.json.id, 'app-link'))?.isSymbolicLink());
  t.equal(lstatOrNull(join(srv.dataDir, 'workspaces', r.json.id, 'feature.txt')), null, 'not the feature branch');
  t.equal(lstatOrNull(join(srv.dataDir, 'workspaces', r.json.id, 'README'))?.uid, 65532);
  const other = await create({ git: { url: url('proj'), ref: 'feature' } });
  t.equal(wsFile(other.json.id, 'feature.txt'), 'feature\n', 'another branch');
});

t.test('a tag', async (t) => {
  const r = await create({ git: { url: url('proj'), ref: 'v1' } });
  t.equal(r.status, 201, r.text);
  t.equal(wsFile(r.json.id, 'README'), 'version 1\n');
  t.equal(lstatOrNull(join(srv.dataDir, 'workspaces', r.json.id, 'src')), null);
});

t.test('a commit', async (t) => {
  const r = await create({ git: { url: url('proj'), ref: firstCommit } });
  t.equal(r.status, 201, r.text);
  t.equal(wsFile(r.json.id, 'README'), 'version 1\n');
});

t.test('refusals leave nothing behind', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  const cases: [unknown, number, string, Record<string, unknown>?][] = [
    [{ url: 'ext::sh -c touch% /tmp/pwned', ref: 'main' }, 422, 'GIT_URL_REFUSED'],
    [{ url: 'file:///etc', ref: 'main' }, 422, 'GIT_URL_REFUSED', { rule: 'scheme_not_allowed', scheme: 'file' }],
    [{ url: 'ssh://git.test/proj.git', ref: 'main' }, 422, 'GIT_URL_REFUSED', { rule: 'scheme_not_allowed' }],
    [{ url: 'git://git.test/proj.git', ref: 'main' }, 422, 'GIT_URL_REFUSED', { rule: 'scheme_not_allowed' }],
    [{ url: 'git@git.test:proj.git', ref: 'main' }, 422, 'GIT_URL_REFUSED'],
    [{ url: `http://user:pw@git.test:${repos.port}/proj.git`, ref: 'main' }, 422, 'GIT_URL_REFUSED', { rule: 'credentials_in_url' }],
    [{ url: `http://other.test:${repos.port}/proj.git`, ref: 'main' }, 422, 'GIT_URL_REFUSED', { rule: 'plain_http_not_allowed' }],
    [{ url: 'https://other.test/proj.git', ref: 'main' }, 422, 'GIT_HOST_NOT_ALLOWED', { host: 'other.test', bound: 'workspaces.git.allowedHosts' }],
    [{ url: `http://git.test:1/proj.git`, ref: 'main' }, 422, 'GIT_URL_REFUSED', { rule: 'port_not_allowed' }],
    [{ url: `http://private.test:${repos.port}/proj.git`, ref: 'main' }, 422, 'GIT_ADDRESS_FORBIDDEN', { host: 'private.test', addresses: [{ address: '10.9.8.7', reason: 'private' }] }],
    [{ url: url('proj'), ref: '--upload-pack=touch /tmp/pwned' }, 400, 'VALIDATION_FAILED'],
    [{ url: url('proj'), ref: 'no-such-branch' }, 422, 'GIT_CLONE_FAILED'],
    [{ url: url('missing'), ref: 'main' }, 422, 'GIT_CLONE_FAILED'],
    [{ url: url('evil'), ref: 'main' }, 422, 'WORKSPACE_LINK_ESCAPE', { entry: 'passwd', rule: 'symlink_absolute' }],
    [{ url: url('big'), ref: 'main' }, 413, 'GIT_TOO_LARGE', { limit: 1024 * 1024, bound: 'workspaces.git.maxBytes' }],
  ];
  for (const [body, status, code, details] of cases) {
    const r = await create({ git: body });
    t.equal(r.status, status, `${JSON.stringify(body)} → ${status} (${r.text.slice(0, 300)})`);
    t.equal(r.json?.error?.code, code);
    if (details) t.match(r.json?.error?.details, details);
  }
  t.equal(lstatOrNull('/tmp/pwned'), null, 'no command ran');
  t.equal(workspaceRecords(srv.dataDir), before, 'no workspace record');
  t.same(leftovers(srv.dataDir).filter((p) => p.startsWith('tmp/')), [], 'no clone directory left in tmp');
});

t.test('a clone that stalls is killed at the time limit, with its process group', async (t) => {
  const stalledUrl = url('proj', 'slow.test', stalledPort);
  const r = await create({ git: { url: stalledUrl, ref: 'main' } });
  t.equal(r.status, 422, r.text);
  t.match(r.json.error, { code: 'GIT_TIMEOUT', details: { limitSeconds: 6, bound: 'workspaces.git.timeoutSeconds' } });
  t.same(hostProcesses(stalledUrl), [], 'no git process is left');
  t.same(leftovers(srv.dataDir).filter((p) => p.startsWith('tmp/')), []);
});

t.test('the repository server saw only this test\'s requests for the allowed repositories', async (t) => {
  t.ok(repos.requests.some((r) => r.includes('/proj.git/')));
  t.notOk(repos.requests.some((r) => r.includes('other')), 'nothing fetched for refused URLs');
});
