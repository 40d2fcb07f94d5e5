// What deploy/ ships: the systemd units pass `systemd-analyze verify`, and the example production
// configuration is the one the schema generates, names every key, loads, and is accepted by the
// built CLI's check-config.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { COMMENTED_OUT, configKeyPaths, exampleConfigText, PRODUCTION_VALUES } from '../../src/config/example.js';
import { loadConfig } from '../../src/config/load.js';
import { installDir } from '../../src/paths.js';

const root = installDir();
const example = join(root, 'deploy', 'sandboxshift.example.yaml');

t.test('the example configuration is the generated one (npm run build && npm run example-config)', async (t) => {
  t.equal(readFileSync(example, 'utf8'), exampleConfigText());
});

t.test('the example configuration loads, with its production values', async (t) => {
  const config = loadConfig(example) as unknown as Record<string, unknown>;
  for (const [path, value] of Object.entries(PRODUCTION_VALUES)) {
    t.same(path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], config), value, path);
  }
});

t.test('the example configuration sets every key that is not shown commented out', async (t) => {
  const raw = parse(readFileSync(example, 'utf8')) as Record<string, unknown>;
  const text = readFileSync(example, 'utf8');
  const paths = configKeyPaths();
  t.ok(paths.length > 50, `the schema has many keys (${paths.length})`);
  for (const path of paths) {
    const commented = COMMENTED_OUT.some((p) => path === p || path.startsWith(`${p}.`));
    const leafKey = path.split('.').pop()!;
    if (commented) {
      t.match(text, new RegExp(`^\\s*# (\\s*)${leafKey}:`, 'm'), `${path} is shown commented out`);
    } else {
      const value = path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], raw);
      t.not(value, undefined, `${path} is set`);
    }
  }
});

t.test('check-config accepts the example configuration', async (t) => {
  const cli = join(root, 'dist', 'src', 'cli.js');
  t.ok(existsSync(cli), 'the CLI is built');
  const r = spawnSync(process.execPath, [cli, 'check-config', '--config', example], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  t.equal(JSON.parse(r.stdout).dataDir, '/var/lib/sandboxshift');
});

t.test('systemd-analyze verify accepts the units', async (t) => {
  const dir = join(root, 'deploy', 'systemd');
  const units = readdirSync(dir).filter((f) => /\.(service|socket)$/.test(f)).map((f) => join(dir, f));
  t.same(units.map((u) => u.split('/').pop()).sort(), ['sandboxshift-podman.service', 'sandboxshift-podman.socket', 'sandboxshift.service']);
  const r = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8' });
  t.equal(r.error, undefined, 'systemd-analyze runs (Debian package systemd)');
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr.trim(), '', 'no warnings');
});
