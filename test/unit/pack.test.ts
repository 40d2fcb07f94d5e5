// packDirectory: what goes into the uploaded tar.gz (read back with tar's own lister).
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { list } from 'tar';
import { packDirectory } from '../../src/client/pack.js';

t.test('nested .gitignore files, default excludes, links kept inside and skipped outside, special files skipped', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-pack-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files: Record<string, string> = {
    '.gitignore': '*.tmp\n!keep.tmp\n/build-out/\n',
    'a.txt': 'a',
    'x.tmp': 'x',
    'keep.tmp': 'k',
    'build-out/o': 'o',
    'src/.gitignore': 'local.cfg\n',
    'src/local.cfg': 'l',
    'src/main.c': 'm',
    'src/deep/local.cfg': 'l2',
    'other/local.cfg': 'kept: the src/.gitignore does not apply here',
    'node_modules/m/i.js': 'i',
    'src/node_modules/n.js': 'n',
    '.git/config': 'c',
    '__pycache__/c.pyc': 'p',
    'target/debug/bin': 'b',
  };
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), c);
  }
  symlinkSync('src/main.c', join(dir, 'to-main'));
  symlinkSync('../outside', join(dir, 'up'));
  symlinkSync('to-main', join(dir, 'chain'));
  const { execFileSync } = await import('node:child_process');
  execFileSync('mkfifo', [join(dir, 'fifo')]);

  const packed = await packDirectory(dir, { hash: true });
  t.teardown(() => packed.cleanup());
  const entries: { path: string; type: string }[] = [];
  await list({ file: packed.file, onReadEntry: (e) => entries.push({ path: e.path, type: e.type }) });
  const paths = entries.map((e) => e.path.replace(/\/$/, ''));
  t.same(paths.filter((p) => !entries.find((e) => e.path.replace(/\/$/, '') === p && e.type === 'Directory')).sort(), [
    '.gitignore',
    'a.txt',
    'keep.tmp',
    'other/local.cfg',
    'src/.gitignore',
    'src/main.c',
    'to-main',
  ]);
  t.match(entries.find((e) => e.path === 'to-main'), { type: 'SymbolicLink' }, 'a link inside is stored as a link');
  t.same(
    packed.skipped.map((s) => s.path).sort(),
    ['chain', 'fifo', 'up'],
    'the link out, the link through a link and the FIFO are skipped',
  );
  t.equal(packed.files.get('a.txt'), 'ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb', 'sha256 of each file when asked');
  t.equal(paths.at(-1), 'to-main', 'links come last');
});
