/**
 * Egress from real task containers (runc, NetworkMode none + the relay + the per-task proxy socket)
 * to test servers this file owns on loopback, reached through names in egress.testHosts.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { egressReport } from '../../src/http/responses.js';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
import { echoUpstream, httpUpstream, httpsUpstream, packageIndex, PROBE_PY } from '../helpers/egress.js';
import { sleep, leftContainers } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';

const web = await httpUpstream(['127.0.0.1', '127.0.0.2']);
const tls = await httpsUpstream(['secure.test']);
const index = await packageIndex();
const echo = await echoUpstream();
const names = ['ok.test', 'sub.ok.test', 'secure.test', 'pypi.test', 'denied.test', 'echo.test'];
const srv = await startTestServer({
  egress: {
    testHosts: { ...Object.fromEntries(names.map((n) => [n, ['127.0.0.1']])), 'rebind.test': ['127.0.0.2'] },
    allowPrivateRanges: ['127.0.0.1/32'],
    ports: [80, 443, web.port, tls.port, index.port, echo.port],
    ceiling: [...names, 'rebind.test', '*.ok.test'],
  },
});
t.teardown(async () => {
  await srv.close();
  await Promise.all([web.close(), tls.close(), index.close(), echo.close()]);
});

const files = { 'probe.py': PROBE_PY, 'ca.pem': tls.ca };
const probe = (allow: string[] | undefined, lines: string[], extra: Record<string, unknown> = {}) =>
  runTask(srv.url, lines.join('; '), { workspace: { files }, ...(allow ? { network: { allow } } : {}), ...extra });
const egressOf = async (id: string) => (await api(srv.url, 'GET', `/v1/tasks/${id}/egress`)).json;

t.test('an allowed name over plain HTTP and over CONNECT (HTTPS) with Python urllib, both variable cases', async (t) => {
  const r = await probe(['ok.test', 'secure.test'], [
    `python3 probe.py http http://ok.test:${web.port}/plain`,
    `env -u http_proxy -u https_proxy -u all_proxy python3 probe.py http http://ok.test:${web.port}/upper-only`,
    `env -u HTTP_PROXY -u HTTPS_PROXY -u ALL_PROXY python3 probe.py http http://ok.test:${web.port}/lower-only`,
    `python3 probe.py http https://secure.test:${tls.port}/tls ca.pem`,
  ]);
  t.equal(r.task.status, 'succeeded', r.stderr);
  t.equal(
    r.stdout,
    ['ok 200 hello /plain', 'ok 200 hello /upper-only', 'ok 200 hello /lower-only', 'ok 200 secure hello /tls', ''].join('\n'),
  );
  t.match(r.task.network, { allow: ['ok.test', 'secure.test'], unrestricted: false });
  const e = await egressOf(r.id);
  t.same(
    e.decisions.map((d: any) => [d.host, d.port, d.allowed, d.reason, d.address]),
    [
      ['ok.test', web.port, true, 'allowlisted', '127.0.0.1'],
      ['ok.test', web.port, true, 'allowlisted', '127.0.0.1'],
      ['ok.test', web.port, true, 'allowlisted', '127.0.0.1'],
      ['secure.test', tls.port, true, 'allowlisted', '127.0.0.1'],
    ],
  );
  t.ok(e.decisions.every((d: any) => d.bytesUp > 0 && d.bytesDown > 0), 'bytes both ways are recorded');
  t.ok(egressReport.safeParse(e).success, 'the body matches the EgressReport schema of openapi.yaml');
  t.ok(tls.seen.includes(`GET /tls host=secure.test:${tls.port}`), 'the TLS server saw the request: the tunnel is end to end');
});

t.test('pip installs from a test index through the proxy (standard variables and PIP_PROXY)', async (t) => {
  const pip = `python3 -m pip install --disable-pip-version-check --no-cache-dir --index-url http://pypi.test:${index.port}/simple/ --trusted-host pypi.test sbxdemo`;
  const r = await probe(['pypi.test'], [
    `env -u PIP_PROXY ${pip} >pip.log 2>&1 || cat pip.log`,
    `python3 -c 'import sbxdemo; print(sbxdemo.VALUE)'`,
    // PIP_PROXY alone (every standard variable removed) is enough for pip too.
    `env -u HTTP_PROXY -u http_proxy -u HTTPS_PROXY -u https_proxy -u ALL_PROXY -u all_proxy ${pip.replace('install', 'download --no-deps -d /tmp/dl')} >pip2.log 2>&1 || cat pip2.log`,
    'ls /tmp/dl',
  ]);
  t.equal(r.task.status, 'succeeded', r.stdout + r.stderr);
  t.equal(r.stdout, 'from-test-index\nsbxdemo-1.0-py3-none-any.whl\n');
  t.ok(index.seen.includes('GET /simple/sbxdemo/'), 'pip asked the index for the project');
  const e = await egressOf(r.id);
  t.ok(e.decisions.length >= 1 && e.decisions.every((d: any) => d.host === 'pypi.test' && d.allowed), 'only the index was contacted');
});

t.test('a denied name gets a clear proxy error and is recorded; wildcards do not cover the apex', async (t) => {
  const r = await probe(['*.ok.test'], [
    `python3 probe.py http http://denied.test:${web.port}/x`,
    `python3 probe.py http http://ok.test:${web.port}/apex`,
    `python3 probe.py http http://sub.ok.test:${web.port}/sub`,
  ]);
  const lines = r.stdout.trim().split('\n');
  t.match(lines[0], /^http 403 denied; reason=not_allowlisted sandboxshift egress proxy: 403 Forbidden: denied\.test:\d+: not_allowlisted$/);
  t.match(lines[1], /^http 403 denied; reason=not_allowlisted/, 'the apex is not covered by *.ok.test');
  t.equal(lines[2], 'ok 200 hello /sub', 'positive control: a subdomain works');
  const e = await egressOf(r.id);
  t.same(
    e.decisions.map((d: any) => [d.host, d.allowed, d.reason, d.bytesUp]),
    [
      ['denied.test', false, 'not_allowlisted', 0],
      ['ok.test', false, 'not_allowlisted', 0],
      ['sub.ok.test', true, 'allowlisted', e.decisions[2].bytesUp],
    ],
  );
  t.notOk(web.seen.some((s) => s.startsWith('GET /x ') || s.startsWith('GET /apex ')), 'no denied request reached the server');
});

t.test('CONNECT to an IP literal and to a name resolving to loopback are refused; a permitted name works in the same task', async (t) => {
  const r = await probe(['ok.test', 'rebind.test'], [
    `python3 probe.py connect 127.0.0.1:${echo.port}`,
    `python3 probe.py connect rebind.test:${web.port}`,
    `python3 probe.py connect echo.test:${echo.port}`,
    `python3 probe.py connect ok.test:${echo.port}`,
  ]);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines[0], 'HTTP/1.1 403 Forbidden | X-SandboxShift-Egress: denied; reason=ip_literal');
  t.equal(lines[1], 'HTTP/1.1 403 Forbidden | X-SandboxShift-Egress: denied; reason=forbidden_address:loopback', 'rebinding: 127.0.0.2 is not in the test ranges');
  t.equal(lines[2], 'HTTP/1.1 403 Forbidden | X-SandboxShift-Egress: denied; reason=not_allowlisted');
  t.equal(lines[3], 'HTTP/1.1 200 Connection Established | echo-me', 'positive control: the same echo server by an allowed name');
  const e = await egressOf(r.id);
  t.match(e.decisions[1], { host: 'rebind.test', allowed: false, reason: 'forbidden_address:loopback', address: '127.0.0.2' });
});

t.test('no DNS in the container: no resolver file, names do not resolve, with or without an allowlist', async (t) => {
  for (const allow of [undefined, ['ok.test']]) {
    const r = await probe(allow, [
      'test -e /etc/resolv.conf && echo resolv.conf-present || echo no-resolv.conf',
      'python3 probe.py resolve ok.test',
      'ls /sys/class/net',
    ]);
    t.equal(r.stdout, 'no-resolv.conf\nerror gaierror\nlo\n', `allow=${JSON.stringify(allow)}`);
  }
});

t.test('a task without an allowlist has only loopback, no proxy socket and no proxy variables', async (t) => {
  const r = await probe(undefined, ['ls /sys/class/net', 'test -e /run/sandboxshift/egress/egress.sock && echo socket || echo no-socket', 'env | grep -ci proxy || true']);
  t.equal(r.stdout, 'lo\nno-socket\n0\n');
  t.same((await egressOf(r.id)).decisions, []);
  t.same(r.task.network, { allow: [], unrestricted: false });
});

t.test('the proxy socket (its directory mounted) is read-only, outside the workspace, and the relay is the proxy variables\' target', async (t) => {
  const r = await probe(['ok.test'], [
    'grep " /run/sandboxshift/egress " /proc/self/mountinfo | cut -d" " -f6 | cut -d, -f1',
    'ls -l /run/sandboxshift/egress/egress.sock | cut -c1-10',
    'echo "$HTTP_PROXY $https_proxy $PIP_PROXY $npm_config_https_proxy $NO_PROXY"',
    'rm -f /run/sandboxshift/egress/egress.sock 2>/dev/null && echo removed || echo not-removed',
    'test -S /run/sandboxshift/egress/egress.sock && echo still-a-socket',
  ]);
  t.equal(r.stdout, 'ro\nsrw-------\nhttp://127.0.0.1:3128 http://127.0.0.1:3128 http://127.0.0.1:3128 http://127.0.0.1:3128 localhost,127.0.0.1,::1\nnot-removed\nstill-a-socket\n');
});

t.test('an allowlisted task keeps the whole hardened profile; the relay runs as the task user', async (t) => {
  const r = await probe(['ok.test'], [
    'id -u',
    'grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status | tr -s "\t " " "',
    'for p in /proc/[0-9]*; do c=$(tr "\\0" " " < $p/cmdline 2>/dev/null); case "$c" in sbx-relay*|/usr/local/bin/sbx-relay*) grep -E "^(Uid|CapEff):" $p/status | tr -s "\t " " ";; esac; done | sort -u',
    'touch /etc/x 2>&1 | grep -o "Read-only file system"',
  ]);
  t.equal(
    r.stdout,
    ['65532', 'CapEff: 0000000000000000', 'NoNewPrivs: 1', 'Seccomp: 2', 'CapEff: 0000000000000000', 'Uid: 65532 65532 65532 65532', 'Read-only file system', ''].join('\n'),
  );
});

t.test('cancelling a task tears down its tunnels; nothing the server created for it outlives it', async (t) => {
  const { id } = await submit(srv.url, {
    command: `python3 -c 'import socket,time; s=socket.create_connection(("127.0.0.1",3128)); s.sendall(b"CONNECT echo.test:${echo.port} HTTP/1.1\\r\\n\\r\\n"); print(s.recv(100), flush=True); time.sleep(300)'`,
    network: { allow: ['echo.test'] },
  });
  const sock = join(srv.dataDir, 'egress', id, 'egress.sock');
  let e: any;
  for (let i = 0; i < 200 && echo.open.size === 0; i++) await sleep(100);
  t.equal(echo.open.size, 1, 'the task holds a tunnel to the echo server');
  t.ok(existsSync(sock), 'the task has its proxy socket while it runs');
  await api(srv.url, 'POST', `/v1/tasks/${id}/cancel`);
  const done = await waitDone(srv.url, id);
  t.equal(done.status, 'cancelled');
  t.notOk(existsSync(sock), 'the socket is gone when the task is');
  t.notOk(existsSync(join(srv.dataDir, 'egress', id)), 'and so is its directory');
  for (let i = 0; i < 50 && echo.open.size > 0; i++) await sleep(100);
  t.equal(echo.open.size, 0, 'the upstream connection was closed');
  t.same(await leftContainers(srv.services.socketPath, id), [], 'no container left');
  e = await egressOf(id);
  t.match(e.decisions, [{ host: 'echo.test', allowed: true, bytesUp: 0, bytesDown: 0 }]);
});

t.test('policy refusals at submit: outside the ceiling, over-broad, image without a relay', async (t) => {
  const outside = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', network: { allow: ['ok.test', 'elsewhere.example.com'] } });
  t.equal(outside.status, 422);
  t.match(outside.json.error, { code: 'EGRESS_OUTSIDE_CEILING', details: { host: 'elsewhere.example.com' } });
  t.match(outside.json.error.message, /elsewhere\.example\.com/);
  const broad = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', network: { allow: ['*.test'] } });
  t.match(broad, { status: 422, json: { error: { code: 'EGRESS_PATTERN_TOO_BROAD', details: { entry: '*.test' } } } });

  // An image without the relay label: a throwaway image of this test (FROM the python image).
  const tag = `localhost/sandboxshift-test/norelay-${process.pid}:1`;
  const conf = { ...process.env, CONTAINERS_CONF: join(process.cwd(), 'deploy/containers.conf') };
  const context = mkdtempSync(join(tmpdir(), 'sbx-norelay-'));
  writeFileSync(join(context, 'Containerfile'), 'FROM sandboxshift/runtime-python:3.11\nLABEL io.sandboxshift.relay=""\n');
  execFileSync('podman', ['--runtime', 'runc', 'build', '-q', '-t', tag, context], { env: conf, stdio: 'ignore' });
  rmSync(context, { recursive: true, force: true });
  const other = await startTestServer({
    images: { languages: { python: { image: tag } }, multi: null, default: 'python', markers: {} },
    egress: { testHosts: { 'ok.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'] },
  });
  try {
    const r = await api(other.url, 'POST', '/v1/tasks', { command: 'true', network: { allow: ['ok.test'] } });
    t.match(r, { status: 422, json: { error: { code: 'EGRESS_RELAY_MISSING', details: { image: tag, label: 'io.sandboxshift.relay' } } } });
    const control = await api(other.url, 'POST', '/v1/tasks', { command: 'true' });
    t.equal(control.status, 202, 'positive control: the same image runs tasks without an allowlist');
    await waitDone(other.url, control.json.id);
  } finally {
    await other.close();
    execFileSync('podman', ['--runtime', 'runc', 'rmi', '-f', tag], { env: conf, stdio: 'ignore' });
  }
});

t.test('multipart tasks: an egress refusal creates nothing; an accepted one runs with its allowlist', async (t) => {
  const { tar } = await import('../helpers/archives.js');
  const { leftovers, workspaceRecords } = await import('../helpers/intake.js');
  const post = async (task: unknown) => {
    const form = new FormData();
    form.append('task', JSON.stringify(task));
    form.append('workspace', new Blob([tar([{ name: 'probe.py', data: PROBE_PY }])], { type: 'application/x-tar' }), 'w.tar');
    const res = await fetch(`${srv.url}/v1/tasks`, { method: 'POST', body: form });
    return { status: res.status, json: (await res.json()) as any };
  };
  const before = workspaceRecords(srv.dataDir);
  const beforeDirs = leftovers(srv.dataDir);
  const broad = await post({ command: 'true', network: { allow: ['*.test'] } });
  t.match(broad, { status: 422, json: { error: { code: 'EGRESS_PATTERN_TOO_BROAD' } } });
  const outside = await post({ command: 'true', network: { allow: ['elsewhere.example.com'] } });
  t.match(outside, { status: 422, json: { error: { code: 'EGRESS_OUTSIDE_CEILING', details: { host: 'elsewhere.example.com' } } } });
  t.equal(workspaceRecords(srv.dataDir), before, 'no workspace record was left');
  t.same(leftovers(srv.dataDir), beforeDirs, 'no workspace directory was left');

  const ok = await post({ command: `python3 probe.py http http://ok.test:${web.port}/multipart`, network: { allow: ['ok.test'] } });
  t.equal(ok.status, 202, JSON.stringify(ok.json));
  const done = await waitDone(srv.url, ok.json.id);
  t.match(done, { status: 'succeeded', network: { allow: ['ok.test'] } });
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${ok.json.id}/logs?stream=stdout`)).text, 'ok 200 hello /multipart\n');
});
