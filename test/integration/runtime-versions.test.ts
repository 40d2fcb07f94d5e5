// Runtime versions: /readyz names the Podman, runc, runsc and kernel versions, and warns about a
// runc without the fixes for CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881; the built server
// logs the same at start-up.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { stringify } from 'yaml';
import { installDir } from '../../src/paths.js';
import { api } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const CVES = ['CVE-2025-31133', 'CVE-2025-52565', 'CVE-2025-52881'];
const podmanCli = /podman version (\S+)/.exec(execFileSync('podman', ['--version'], { encoding: 'utf8' }))![1]!;
const runcCli = /runc version (\S+)/.exec(execFileSync('runc', ['--version'], { encoding: 'utf8' }))![1]!;
const runscCli = existsSync('/usr/bin/runsc') ? /runsc version (\S+)/.exec(execFileSync('/usr/bin/runsc', ['--version'], { encoding: 'utf8' }))![1]! : null;
// This machine's runc (Debian's 1.1.5, whose changelog names none of the three) predates the fixes.
const runcUnfixed = /^1\.[01]\./.test(runcCli);

t.test('/readyz: podman, runc, runsc and kernel versions; the runc CVE warning', async (t) => {
  const srv = await startTestServer();
  t.teardown(() => srv.close());
  const r = await api(srv.url, 'GET', '/readyz');
  t.equal(r.status, 200, JSON.stringify(r.json));
  const runtime = r.json.runtime;
  t.equal(runtime.podman, podmanCli, `podman ${podmanCli}`);
  t.equal(runtime.runc, runcCli, `runc ${runcCli}`);
  t.match(runtime.runcPackage, /^runc_/, 'the distribution package is named');
  t.equal(runtime.runsc, runscCli, `runsc ${runscCli ?? 'absent'}`);
  t.equal(runtime.kernel, release());
  if (runcUnfixed) {
    t.equal(runtime.warnings.length, 1, 'one warning');
    for (const cve of CVES) t.match(runtime.warnings[0], cve, `the warning names ${cve}`);
    t.match(runtime.warnings[0], /gVisor/, 'and the gVisor mitigation');
    t.match(runtime.warnings[0], /upgrade runc/, 'and the upgrade');
  }
  t.equal(r.json.ready, true, 'a warning does not make the server unready');
});

t.test('the built server logs the versions and the warning at start-up', async (t) => {
  const server = join(installDir(), 'dist', 'src', 'server.js');
  if (!existsSync(server)) throw new Error(`${server} is missing: run npm run build first`);
  const dir = mkdtempSync(join(tmpdir(), 'sbx-versions-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dataDir = join(dir, 'data');
  const config = join(dir, 'config.yaml');
  writeFileSync(config, stringify({ dataDir, listen: { port: 0 }, engine: { socket: process.env.SANDBOXSHIFT_TEST_SOCKET ?? null } }));
  const child = spawn(process.execPath, [server, '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  });
  // Everything the server logs about its runtime comes before it listens.
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not listening within 60 s: ${JSON.stringify(lines)}`)), 60_000);
    child.once('exit', (code) => reject(new Error(`server exited ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const entry = JSON.parse(line);
      if (/^runtime (versions|warning)/.test(entry.msg)) lines.push(entry);
      if (/^Server listening at/.test(entry.msg)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  t.equal(lines.length, runcUnfixed ? 2 : 1, 'the versions, and a warning when runc predates the fixes');
  t.match(lines[0], { level: 30, msg: 'runtime versions', podman: podmanCli, runc: runcCli, runsc: runscCli, kernel: release() });
  if (runcUnfixed) {
    t.equal(lines[1]!.level, 40, 'the warning is logged at warn level');
    for (const cve of CVES) t.match(lines[1]!.msg, cve, `the log names ${cve}`);
    t.match(lines[1]!.msg, /gVisor/);
  }
});
