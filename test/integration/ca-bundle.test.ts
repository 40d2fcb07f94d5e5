/**
 * Operator CAs for tasks (tasks.caBundle): an allowlisted test host serves HTTPS with a
 * certificate from a test CA. With the CA in tasks.caBundle, Python urllib, Node https (through a
 * CONNECT tunnel: Node's https ignores proxy variables) and pip reach it through the egress
 * proxy; without it, each fails verification; a request env naming another bundle changes
 * nothing. The bundle is mounted read-only at /run/sandboxshift/ca.pem.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runTask } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const IMAGE = 'sandboxshift/runtime-multi:latest';
const HOST = 'tls.sbx.test';

// A test CA and a server certificate it signed.
const dir = mkdtempSync(join(tmpdir(), 'sbx-ca-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const f = (n: string) => join(dir, n);
const ssl = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=SandboxShift Test CA', '-keyout', f('ca.key'), '-out', f('ca.pem')]);
ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${HOST}`, '-keyout', f('srv.key'), '-out', f('srv.csr')]);
writeFileSync(f('ext.cnf'), `subjectAltName=DNS:${HOST}\nbasicConstraints=CA:FALSE\n`);
ssl(['x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '1', '-extfile', f('ext.cnf'), '-out', f('srv.pem')]);

const seen: string[] = [];
const server = https.createServer({ key: readFileSync(f('srv.key')), cert: readFileSync(f('srv.pem')) }, (req, res) => {
  seen.push(`${req.method} ${req.url}`);
  if (req.url === '/simple/sbxpkg/') {
    res.setHeader('content-type', 'text/html');
    return res.end('<!DOCTYPE html><html><body><a href="sbxpkg-1.0.tar.gz">sbxpkg-1.0.tar.gz</a></body></html>\n');
  }
  res.end('tls-ok\n');
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as AddressInfo).port;
t.teardown(() => new Promise((r) => server.close(r)));

const egress = { testHosts: { [HOST]: ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [443, port] };
const withCa = await startTestServer({ egress, tasks: { caBundle: f('ca.pem') } });
const without = await startTestServer({ egress });
t.teardown(() => withCa.close());
t.teardown(() => without.close());

const url = `https://${HOST}:${port}/`;
const NODE_HTTPS = [
  "const http = require('http'), tls = require('tls');",
  `const req = http.request({ host: '127.0.0.1', port: Number(new URL(process.env.https_proxy).port), method: 'CONNECT', path: '${HOST}:${port}' });`,
  "req.on('connect', (res, sock) => { const s = tls.connect({ socket: sock, servername: '" + HOST + "' }, () => { s.write('GET / HTTP/1.1\\r\\nHost: " + HOST + "\\r\\nConnection: close\\r\\n\\r\\n'); });",
  "  let body = ''; s.on('data', (d) => body += d); s.on('end', () => console.log(body.includes('tls-ok') ? 'node=ok' : 'node=bad'));",
  "  s.on('error', (e) => console.log('node=' + e.code)); });",
  "req.on('error', (e) => console.log('node=proxy-' + e.code)); req.end();",
].join('\n');
const COMMAND = [
  `python3 -c "import urllib.request; print('python=' + urllib.request.urlopen('${url}', timeout=10).read().decode().strip())" 2>&1 | grep -o 'python=.*\\|CERTIFICATE_VERIFY_FAILED' | head -n1`,
  `node -e "$(cat node.js)"`,
  `pip index versions sbxpkg --retries 0 --timeout 10 --index-url ${url}simple/ 2>&1 | grep -o 'sbxpkg (1.0)\\|CERTIFICATE_VERIFY_FAILED' | head -n1`,
  'echo "mount=$(grep -c " /run/sandboxshift/ca.pem " /proc/self/mountinfo) ssl=$SSL_CERT_FILE"',
  'echo x > /run/sandboxshift/ca.pem 2>/dev/null && echo write=yes || echo write=no',
].join('; ');
const task = (srv: { url: string }, env: Record<string, string> = {}) =>
  runTask(srv.url, COMMAND, { image: IMAGE, env, workspace: { files: { 'node.js': NODE_HTTPS } }, network: { allow: [HOST] } });

t.test('with the CA in tasks.caBundle, Python, Node and pip verify the test host', async (t) => {
  const r = await task(withCa);
  t.equal(r.task.status, 'succeeded', r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines[0], 'python=tls-ok', 'Python urllib');
  t.equal(lines[1], 'node=ok', 'Node https (NODE_EXTRA_CA_CERTS)');
  t.equal(lines[2], 'sbxpkg (1.0)', 'pip (PIP_CERT)');
  t.equal(lines[3], 'mount=1 ssl=/run/sandboxshift/ca.pem', 'the bundle is mounted and named');
  t.equal(lines[4], 'write=no', 'read-only');
  t.ok(seen.includes('GET /simple/sbxpkg/'), 'pip asked the test index');
});

t.test('without it, each fails verification', async (t) => {
  const r = await task(without);
  const lines = r.stdout.trim().split('\n');
  t.equal(lines[0], 'CERTIFICATE_VERIFY_FAILED', 'Python urllib');
  t.match(lines[1], /^node=(UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)$/, 'Node https');
  t.equal(lines[2], 'CERTIFICATE_VERIFY_FAILED', 'pip');
  t.equal(lines[3], 'mount=0 ssl=', 'no bundle mounted, no variable set');
});

t.test("a request's env cannot replace the bundle", async (t) => {
  const env = { SSL_CERT_FILE: '/dev/null', NODE_EXTRA_CA_CERTS: '/dev/null', PIP_CERT: '/dev/null', REQUESTS_CA_BUNDLE: '/dev/null' };
  const r = await task(withCa, env);
  const lines = r.stdout.trim().split('\n');
  t.same(lines.slice(0, 4), ['python=tls-ok', 'node=ok', 'sbxpkg (1.0)', 'mount=1 ssl=/run/sandboxshift/ca.pem'], r.stderr);
});

t.test('a caBundle that is not only certificates stops start-up, naming the file', async (t) => {
  writeFileSync(f('mixed.pem'), readFileSync(f('ca.pem'), 'utf8') + readFileSync(f('ca.key'), 'utf8'));
  await t.rejects(startTestServer({ tasks: { caBundle: f('mixed.pem') } }), /tasks\.caBundle .*mixed\.pem: holds a "PRIVATE KEY" block/);
});
