// `sandboxshift images`, run as the built CLI (dist/src/cli.js) against a real Podman socket: the
// configured images (with the data directory's image record applied), present or missing, and
// the build command of each missing one.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import t from 'tap';
import { stringify } from 'yaml';
import { DEFAULT_IMAGES } from '../../src/config/schema.js';
import { installDir } from '../../src/paths.js';

const cli = join(installDir(), 'dist', 'src', 'cli.js');
if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);
const socket = process.env.SANDBOXSHIFT_TEST_SOCKET ?? null;

const dir = mkdtempSync(join(tmpdir(), 'sbx-images-cli-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const dataDir = join(dir, 'data');
const ABSENT = 'sandboxshift/runtime-absent:0';

function writeConfig(file: string, extra: Record<string, unknown> = {}) {
  const images = { ...DEFAULT_IMAGES, languages: { ...DEFAULT_IMAGES.languages, absent: { image: ABSENT, build: 'echo build-absent' } }, ...extra };
  writeFileSync(join(dir, file), stringify({ dataDir, images }));
  return join(dir, file);
}

// The record a machine set up offline has: go's tag is the one its build produced.
mkdirSync(dataDir, { recursive: true });
writeFileSync(
  join(dataDir, 'images.json'),
  JSON.stringify({
    version: 1,
    mode: 'offline',
    images: { go: { image: 'sandboxshift/runtime-go:1.19', build: 'bash images/offline/build.sh go', built: true } },
  }),
);

function run(args: string[]) {
  const r = spawnSync(process.execPath, [cli, 'images', ...args, ...(socket ? ['--socket', socket] : [])], {
    encoding: 'utf8',
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    timeout: 120_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// What the engine really has, to compare with what the CLI says.
const probeSocket = socket ?? null;
async function presentOnEngine(name: string): Promise<boolean | null> {
  if (!probeSocket) return null;
  try {
    await new Docker({ socketPath: probeSocket }).getImage(name).inspect();
    return true;
  } catch {
    return false;
  }
}

t.test('lists every configured image, present or missing, with the build command of the missing', async (t) => {
  const r = run(['--config', writeConfig('a.yaml')]);
  t.equal(r.status, 0, `exit 0: the default images are present (stderr: ${r.stderr})`);
  const rows = new Map(
    r.stdout
      .split('\n')
      .filter((l) => l.startsWith('sandboxshift/') && /\s(present|MISSING)\s/.test(l))
      .map((l) => {
        const [name, languages, status, kind] = l.trim().split(/\s+/);
        return [name!, { languages, status, kind }];
      }),
  );
  t.same(rows.get('sandboxshift/runtime-python:3.11'), { languages: 'python', status: 'present', kind: 'default' });
  t.same(rows.get('sandboxshift/runtime-node:20'), { languages: 'node', status: 'present', kind: 'default' });
  t.same(rows.get('sandboxshift/runtime-multi:latest'), { languages: 'python,node', status: 'present', kind: 'default' });
  t.same(rows.get(ABSENT), { languages: 'absent', status: 'MISSING', kind: 'optional' });
  t.ok(rows.has('sandboxshift/runtime-go:1.19'), 'the record replaced the built-in go tag');
  t.notOk(rows.has('sandboxshift/runtime-go:1.22'), 'the built-in go tag is not listed');
  for (const name of ['sandboxshift/runtime-go:1.19', 'sandboxshift/runtime-java:21', 'sandboxshift/runtime-rust:latest']) {
    const truth = await presentOnEngine(name);
    if (truth !== null) t.equal(rows.get(name)?.status, truth ? 'present' : 'MISSING', `${name} as the engine says`);
  }
  t.match(r.stdout, new RegExp(`\\n  ${ABSENT}: echo build-absent\\n`), 'the build command of the missing image');
  t.match(r.stdout, /image record: .*images\.json \(offline build\)/);
  t.match(r.stdout, /all default images are present/);
});

t.test('a missing default image: exit 1 and NOT READY', async (t) => {
  const r = run(['--config', writeConfig('b.yaml', { requiredForReady: ['sandboxshift/runtime-python:3.11', ABSENT] })]);
  t.equal(r.status, 1);
  t.match(r.stdout, new RegExp(`${ABSENT.replace(/[.]/g, '\\.')}\\s+absent\\s+MISSING\\s+default`));
  t.match(r.stdout, /NOT READY: a default image is missing/);
});

t.test('--json', async (t) => {
  const r = run(['--config', writeConfig('c.yaml'), '--json']);
  t.equal(r.status, 0);
  const report = JSON.parse(r.stdout);
  t.equal(report.ok, true);
  t.same(report.images.find((i: { name: string }) => i.name === ABSENT), { name: ABSENT, languages: ['absent'], present: false, required: false, build: 'echo build-absent' });
  t.equal(report.record.mode, 'offline');
  t.match(report.gvisor, { allowed: false, runsc: /\S/, canStartContainer: null }, 'runsc installed; gVisor not allowed, so not tried');
});

t.test('gVisor: runsc installed and a hardened gVisor container starts (allowed in the config, or --gvisor)', async (t) => {
  const allowed = join(dir, 'g.yaml');
  writeFileSync(allowed, stringify({ dataDir, engine: { allowedIsolation: ['runc', 'gvisor'] } }));
  const r = run(['--config', allowed, '--json']);
  t.equal(r.status, 0, r.stderr);
  t.match(JSON.parse(r.stdout).gvisor, { allowed: true, runsc: /\S/, canStartContainer: true, error: null });
  const forced = run(['--config', writeConfig('h.yaml'), '--gvisor']);
  t.equal(forced.status, 0, forced.stderr);
  t.match(forced.stdout, /\ngVisor: runsc \S+; a hardened container starts\n/);
});

t.test('an unknown argument: exit 64 with the usage', async (t) => {
  const r = run(['--config', writeConfig('e.yaml'), '--bogus']);
  t.equal(r.status, 64);
  t.match(r.stderr, /unknown argument "--bogus".*usage: sandboxshift images/);
});

t.test('a bad config file: exit 2 naming the problem', async (t) => {
  writeFileSync(join(dir, 'bad.yaml'), 'images: {default: cobol}\n');
  const r = run(['--config', join(dir, 'bad.yaml')]);
  t.equal(r.status, 2);
  t.match(r.stderr, /images/);
});

t.test('no socket and no server running: a short-lived Podman service of its own', async (t) => {
  const r = spawnSync(process.execPath, [cli, 'images', '--config', writeConfig('d.yaml')], {
    encoding: 'utf8',
    cwd: dir,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    timeout: 120_000,
  });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /engine: a temporary Podman API service/);
  t.match(r.stdout, /sandboxshift\/runtime-python:3\.11\s+python\s+present/);
});
