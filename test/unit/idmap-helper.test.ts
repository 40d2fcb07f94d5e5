import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fromInstall } from '../../src/paths.js';
import { buildIdmapHelper } from '../../src/workspace/idmap.js';

const source = fromInstall('deploy/idmap-mount/idmap_mount.c');

t.test('built once per source version, into the first directory only this user can write', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-idmap-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const open = join(dir, 'open');
  mkdirSync(open);
  chmodSync(open, 0o777);
  const bin = await buildIdmapHelper(source, [open, join(dir, 'own')]);
  t.match(bin, /\/own\/idmap-mount-[0-9a-f]{16}$/, 'a directory others can write to is passed over');
  const built = statSync(bin).mtimeMs;
  t.equal(await buildIdmapHelper(source, [join(dir, 'own')]), bin, 'found again');
  t.equal(statSync(bin).mtimeMs, built, 'not rebuilt');
  await t.rejects(buildIdmapHelper(source, [join(dir, 'cc-missing')], 'no-such-cc'), 'no compiler: an error, for the caller to log');
});
