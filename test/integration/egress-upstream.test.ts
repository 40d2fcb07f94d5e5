/**
 * egress.upstreamProxy: the egress proxy, after its own checks, sends CONNECT by name and
 * absolute-URI HTTP to an upstream (corporate) proxy, here a test proxy on loopback that records
 * what reached it. Allowed traffic passes through it; refused traffic never reaches it; a name
 * local DNS cannot answer is left to the upstream; the upstream's refusal is recorded. Then the
 * same through a real task, and git intake through the upstream.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { buildRangeList, createResolver } from '../../src/egress/addresses.js';
import { EgressProxy } from '../../src/egress/proxy.js';
import { loadUpstreamProxy } from '../../src/egress/upstream.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { api, runTask } from '../helpers/client.js';
import { echoThrough, echoUpstream, exchange, httpUpstream, proxySettings, tunnel } from '../helpers/egress.js';
import { serveGit } from '../helpers/git-server.js';
import { startTestServer } from '../helpers/server.js';
import { testUpstreamProxy } from '../helpers/upstream-proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-upstream-'));
const store = new SqliteStore(join(dir, 'db.sqlite'));
const echo = await echoUpstream(['127.0.0.1']);
const web = await httpUpstream(['127.0.0.1']);
// The upstream resolves these itself; `far.test` is unknown to local DNS (the egress resolver).
const upstreamHosts = { 'ok.test': '127.0.0.1', 'far.test': '127.0.0.1', 'git.test': '127.0.0.1' };
const corp = await testUpstreamProxy(upstreamHosts, 'alice:s3cret');
writeFileSync(join(dir, 'creds'), 'alice:s3cret\n');
t.teardown(async () => {
  await echo.close();
  await web.close();
  await corp.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

const localHosts = { 'ok.test': ['127.0.0.1'], 'metadata.test': ['169.254.169.254'] };
const settings = proxySettings([80, 443, echo.port, web.port]);
let n = 0;
const taskId = () => `tsk_up${String(n++).padStart(14, '0')}`;
function proxy(credentialsFile: string | null = join(dir, 'creds')) {
  const up = loadUpstreamProxy({ url: `http://127.0.0.1:${corp.port}`, credentialsFile });
  const p = new EgressProxy(join(dir, `p${n++}`), settings, createResolver(localHosts), buildRangeList(['127.0.0.1/32']), store, pino({ level: 'silent' }), undefined, up);
  p.prepare();
  return p;
}
const decisions = (id: string) => store.egressDecisions(id).decisions;

t.test('CONNECT to an allowed name goes to the upstream by name, with its credentials', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test']);
  t.teardown(() => e.close());
  const before = corp.seen.length;
  const { sock } = await tunnel(e.socketPath, `ok.test:${echo.port}`);
  t.equal(await echoThrough(sock, 'ping-through-corp'), 'ping-through-corp');
  sock.destroy();
  t.same(corp.seen.slice(before), [`CONNECT ok.test:${echo.port} auth=ok`], 'the upstream saw the CONNECT by name');
  t.match(decisions(id)[0], { host: 'ok.test', port: echo.port, allowed: true, reason: 'allowlisted', address: '127.0.0.1' });
});

t.test('plain HTTP goes to the upstream in absolute-URI form', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test']);
  t.teardown(() => e.close());
  const before = corp.seen.length;
  const out = await exchange(e.socketPath, `GET http://ok.test:${web.port}/page HTTP/1.1\r\nHost: ok.test:${web.port}\r\n\r\n`);
  t.match(out, /^HTTP\/1\.1 200/);
  t.match(out, /hello \/page/);
  t.same(corp.seen.slice(before), [`GET http://ok.test:${web.port}/page auth=ok`]);
});

t.test('refused traffic never reaches the upstream', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['ok.test', 'metadata.test']);
  t.teardown(() => e.close());
  const before = corp.seen.length;
  const notListed = await exchange(e.socketPath, `CONNECT other.test:${echo.port} HTTP/1.1\r\n\r\n`);
  const badPort = await exchange(e.socketPath, `CONNECT ok.test:25 HTTP/1.1\r\n\r\n`);
  const metadata = await exchange(e.socketPath, `CONNECT metadata.test:80 HTTP/1.1\r\n\r\n`);
  t.match(notListed, /reason=not_allowlisted/);
  t.match(badPort, /reason=port_not_allowed/);
  t.match(metadata, /reason=forbidden_address/, 'the address policy holds where local DNS answers');
  t.same(corp.seen.slice(before), [], 'nothing reached the upstream');
});

t.test('a name local DNS cannot answer is left to the upstream', async (t) => {
  const id = taskId();
  const e = await proxy().open(id, ['far.test']);
  t.teardown(() => e.close());
  const { sock } = await tunnel(e.socketPath, `far.test:${echo.port}`);
  t.equal(await echoThrough(sock, 'far'), 'far');
  sock.destroy();
  t.match(decisions(id)[0], { host: 'far.test', allowed: true, address: null });
});

t.test("the upstream's refusal is answered and recorded", async (t) => {
  const id = taskId();
  const e = await proxy(null).open(id, ['ok.test']);
  t.teardown(() => e.close());
  const out = await exchange(e.socketPath, `CONNECT ok.test:${echo.port} HTTP/1.1\r\n\r\n`);
  t.match(out, /^HTTP\/1\.1 502/);
  t.match(out, /reason=upstream_refused:407/);
  t.match(decisions(id)[0], { allowed: false, reason: 'upstream_refused:407' });
});

t.test('a real task and git intake go through the upstream', async (t) => {
  const root = join(dir, 'git');
  mkdirSync(join(root, 'src'), { recursive: true });
  writeFileSync(join(root, 'src', 'README'), 'through the corporate proxy\n');
  const git = (...a: string[]) => execFileSync('git', ['-C', join(root, 'src'), ...a], { stdio: 'ignore', env: { ...process.env, GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } });
  git('init', '-q', '-b', 'main');
  git('add', '.');
  git('commit', '-qm', 'c');
  execFileSync('git', ['clone', '-q', '--bare', join(root, 'src'), join(root, 'repo.git')], { stdio: 'ignore' });
  const server = await serveGit(root);
  t.teardown(() => server.close());
  const srv = await startTestServer({
    egress: {
      testHosts: localHosts,
      allowPrivateRanges: ['127.0.0.1/32'],
      ports: [80, 443, web.port],
      upstreamProxy: { url: `http://127.0.0.1:${corp.port}`, credentialsFile: join(dir, 'creds') },
    },
    workspaces: { git: { allowedHosts: ['git.test'], plainHttpHosts: ['git.test'], ports: [server.port] } },
  });
  t.teardown(() => srv.close());
  // git runs as UID 65532 under <dataDir>/tmp: the test helper's mkdtemp made the data directory 0700.
  chmodSync(srv.dataDir, 0o711);

  const before = corp.seen.length;
  const r = await runTask(srv.url, `python3 -c "import urllib.request; print(urllib.request.urlopen('http://ok.test:${web.port}/from-task', timeout=10).read().decode().strip())"`, {
    network: { allow: ['ok.test'] },
  });
  t.equal(r.stdout, 'hello /from-task\n', r.stderr);
  t.same(corp.seen.slice(before), [`GET http://ok.test:${web.port}/from-task auth=ok`], 'the task reached its host through the upstream');

  const ws = await api(srv.url, 'POST', '/v1/workspaces', { git: { url: `http://git.test:${server.port}/repo.git`, ref: 'main' } });
  t.equal(ws.status, 201, ws.text);
  t.ok(corp.seen.slice(before).some((s) => s.startsWith(`GET http://git.test:${server.port}/repo.git/info/refs`) && s.endsWith('auth=ok')), 'git asked the upstream');
});
