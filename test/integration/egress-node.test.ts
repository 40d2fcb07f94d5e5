/**
 * npm and Node's fetch through the egress proxy, in the Node image (built by the images issue).
 * The image is optional on a machine: when it is absent (or has no relay), these checks are
 * reported as SKIPPED, never as passing.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import * as tar from 'tar';
import t from 'tap';
import { api, runTask } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const IMAGE = 'sandboxshift/runtime-node:20';
const socket = process.env.SANDBOXSHIFT_TEST_SOCKET;
const labels = socket
  ? await new Docker({ socketPath: socket })
      .getImage(IMAGE)
      .inspect()
      .then((i) => (i.Config?.Labels ?? {}) as Record<string, string>)
      .catch(() => null)
  : null;

if (!labels?.['io.sandboxshift.relay']) {
  t.skip(`${IMAGE} with an egress relay is not present on this engine: npm and Node fetch are not checked`);
} else {
  // A one-package npm registry: packument + tarball of sbx-npm-demo 1.0.0.
  const dir = mkdtempSync(join(tmpdir(), 'sbx-egress-npm-'));
  mkdirSync(join(dir, 'package'));
  writeFileSync(join(dir, 'package', 'package.json'), JSON.stringify({ name: 'sbx-npm-demo', version: '1.0.0', main: 'index.js' }));
  writeFileSync(join(dir, 'package', 'index.js'), "module.exports = 'from-test-registry';\n");
  await tar.c({ gzip: true, cwd: dir, file: join(dir, 'demo.tgz'), portable: true }, ['package']);
  const tgz = readFileSync(join(dir, 'demo.tgz'));
  rmSync(dir, { recursive: true, force: true });
  const seen: string[] = [];
  const registry = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const base = `http://npm.test:${(registry.address() as AddressInfo).port}`;
    if (req.url === '/sbx-npm-demo') {
      res.setHeader('content-type', 'application/json');
      return res.end(
        JSON.stringify({
          name: 'sbx-npm-demo',
          'dist-tags': { latest: '1.0.0' },
          versions: {
            '1.0.0': {
              name: 'sbx-npm-demo',
              version: '1.0.0',
              main: 'index.js',
              dist: {
                tarball: `${base}/sbx-npm-demo/-/sbx-npm-demo-1.0.0.tgz`,
                shasum: createHash('sha1').update(tgz).digest('hex'),
                integrity: `sha512-${createHash('sha512').update(tgz).digest('base64')}`,
              },
            },
          },
        }),
      );
    }
    if (req.url === '/sbx-npm-demo/-/sbx-npm-demo-1.0.0.tgz') return res.end(tgz);
    res.statusCode = 404;
    res.end('{}');
  });
  await new Promise<void>((r) => registry.listen(0, '127.0.0.1', r));
  const port = (registry.address() as AddressInfo).port;
  const srv = await startTestServer({ egress: { testHosts: { 'npm.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [80, 443, port] } });
  t.teardown(async () => {
    await srv.close();
    await new Promise((r) => registry.close(r));
  });

  t.test('npm installs from a test registry through the proxy', async (t) => {
    const npm = `npm install --no-audit --no-fund --registry http://npm.test:${port}/ sbx-npm-demo >npm.log 2>&1 || cat npm.log`;
    const r = await runTask(srv.url, [npm, `node -p "require('sbx-npm-demo')"`].join('; '), {
      image: IMAGE,
      workspace: { files: { 'package.json': '{"name":"w","version":"1.0.0"}' } },
      network: { allow: ['npm.test'] },
    });
    t.equal(r.stdout, 'from-test-registry\n', r.stderr);
    t.ok(seen.includes('GET /sbx-npm-demo/-/sbx-npm-demo-1.0.0.tgz'), 'the tarball came from the test registry');
    const e = (await api(srv.url, 'GET', `/v1/tasks/${r.id}/egress`)).json;
    t.ok(e.decisions.length > 0 && e.decisions.every((d: any) => d.host === 'npm.test' && d.allowed));
  });

  t.test('which variables npm reads, and Node fetch ignoring them (recorded for the README)', async (t) => {
    // Each variant in its own project directory with its own cache, so each must really fetch.
    const npm = (dir: string, env: string) =>
      `mkdir ${dir} && (cd ${dir} && echo '{}' > package.json && ${env} npm install --no-audit --no-fund --cache /tmp/cache-${dir} --registry http://npm.test:${port}/ sbx-npm-demo >/dev/null 2>&1 && test -f node_modules/sbx-npm-demo/index.js && echo npm-ok || echo npm-failed)`;
    const before = seen.filter((s) => s.endsWith('.tgz')).length;
    const r = await runTask(
      srv.url,
      [
        npm('a', 'env -u HTTP_PROXY -u http_proxy -u HTTPS_PROXY -u https_proxy -u ALL_PROXY -u all_proxy'),
        npm('b', 'env -u npm_config_proxy -u npm_config_https_proxy'),
        `node -e "fetch('http://npm.test:${port}/sbx-npm-demo').then(r => console.log('fetch-ok', r.status), e => console.log('fetch-error', e.cause && e.cause.code))"`,
      ].join('; '),
      { image: IMAGE, workspace: { files: { 'package.json': '{"name":"w","version":"1.0.0"}' } }, network: { allow: ['npm.test'] } },
    );
    const [npmOwn, npmStandard, fetchLine] = r.stdout.trim().split('\n');
    t.equal(npmOwn, 'npm-ok', 'npm with only npm_config_proxy / npm_config_https_proxy');
    t.equal(npmStandard, 'npm-ok', 'npm with only the standard variables');
    t.equal(seen.filter((s) => s.endsWith('.tgz')).length - before, 2, 'both variants downloaded the tarball through the proxy');
    t.match(fetchLine, /^fetch-error (ENOTFOUND|EAI_AGAIN)$/, "Node 20's fetch ignores the proxy variables and finds no resolver");
  });
}
