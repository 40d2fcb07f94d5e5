/**
 * A server without any API key is open to whoever reaches its port, so it refuses to listen on
 * anything but loopback: `sandboxshift serve` exits non-zero saying why before it starts anything
 * (no database, no Podman service, no port), and `check-config` says the same. A key in the
 * configuration or in the database lifts the refusal. Runs the built CLI; nothing listens.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { hashKey } from '../../src/auth/keys.js';
import { runCli } from '../helpers/cli.js';


const root = mkdtempSync(join(tmpdir(), 'sbx-exposure-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

const run = (args: string[]) => runCli(args);

function configFile(name: string, config: Record<string, unknown>): { file: string; dataDir: string } {
  const dataDir = join(root, `${name}-data`);
  const file = join(root, `${name}.json`);
  // An engine socket that does not exist: a server that got past the check would fail on it.
  writeFileSync(file, JSON.stringify({ dataDir, engine: { socket: join(root, 'no-such.sock'), startTimeoutSeconds: 1 }, ...config }));
  return { file, dataDir };
}

t.test('serve without keys on a non-loopback address: refused with the reason, nothing started', async (t) => {
  for (const host of ['0.0.0.0', '192.0.2.10']) {
    const { file, dataDir } = configFile(`open-${host.replace(/\W/g, '_')}`, { listen: { host, port: 0 } });
    const r = await run(['serve', '--config', file]);
    t.equal(r.code, 2, `${host}: exit 2`);
    t.match(r.stderr, /refusing to start: listen\.host is "[^"]+", which is not a loopback address, and the server has no API keys/, `${host}: says why`);
    t.match(r.stderr, /sandboxshift keys create --tenant/, 'and how to fix it');
    t.notOk(existsSync(dataDir), `${host}: no data directory, database or Podman service was created`);
  }
});

t.test('check-config says the same, with exit 2; loopback without keys is fine', async (t) => {
  const open = configFile('check-open', { listen: { host: '0.0.0.0', port: 0 } });
  const r = await run(['check-config', '--config', open.file]);
  t.equal(r.code, 2);
  t.match(r.stderr, /would refuse to start: listen\.host is "0\.0\.0\.0"/);
  t.match(JSON.parse(r.stdout), { listen: { host: '0.0.0.0' } }, 'the effective configuration is still printed');
  t.notOk(existsSync(open.dataDir), 'checking creates no database');
  const loopback = configFile('check-loopback', { listen: { host: '127.0.0.1', port: 0 } });
  t.equal((await run(['check-config', '--config', loopback.file])).code, 0);
});

t.test('a key in the configuration or in the database lifts the refusal', async (t) => {
  const withConfigKey = configFile('check-config-key', {
    listen: { host: '0.0.0.0', port: 0 },
    auth: { keys: [{ id: 'ops', tenant: 'ops', role: 'admin', sha256: hashKey(`ssk_${'k'.repeat(43)}`) }] },
  });
  const a = await run(['check-config', '--config', withConfigKey.file]);
  t.equal(a.code, 0, a.stderr);

  const withDbKey = configFile('check-db-key', { listen: { host: '0.0.0.0', port: 0 } });
  t.equal((await run(['check-config', '--config', withDbKey.file])).code, 2, 'refused before the key exists');
  const created = await run(['keys', 'create', '--tenant', 'team-a', '--config', withDbKey.file]);
  t.equal(created.code, 0, created.stderr);
  const b = await run(['check-config', '--config', withDbKey.file]);
  t.equal(b.code, 0, `accepted once the database has a key: ${b.stderr}`);
  const id = /\b(key_[0-9a-f]+)\b/.exec(created.stdout)![1]!;
  t.equal((await run(['keys', 'revoke', id, '--config', withDbKey.file])).code, 0);
  t.equal((await run(['check-config', '--config', withDbKey.file])).code, 2, 'refused again once its only key is revoked');
});
