import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { AppError } from '../../src/errors.js';
import { sniff } from '../../src/workspace/intake/archive.js';
import { IntakeBudget } from '../../src/workspace/intake/budget.js';
import { TreeWriter } from '../../src/workspace/intake/writer.js';
import { tar, tgz, zip } from '../helpers/archives.js';

const limits = { maxCompressedBytes: 1000, maxExpandedBytes: 100, maxEntries: 5, maxCompressionRatio: 10, ratioGraceBytes: 50 };
const bytes = (s: string) => async (write: (b: Buffer) => Promise<void>) => write(Buffer.from(s));

function fresh(t: Test, maxEntries = 50) {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-writer-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, w: new TreeWriter(dir, { maxDepth: 4, maxPathBytes: 64 }, new IntakeBudget({ ...limits, maxEntries })) };
}

async function rejects(t: Test, p: Promise<unknown>, code: string, rule?: string) {
  try {
    await p;
    t.fail(`expected ${code}`);
  } catch (err) {
    t.type(err, AppError);
    t.equal((err as AppError).code, code);
    if (rule) t.equal((err as AppError).details?.rule, rule);
  }
}

t.test('sniff recognises the three formats from content only', async (t) => {
  t.equal(sniff(tar([{ name: 'a' }])), 'tar');
  t.equal(sniff(tgz([{ name: 'a' }])), 'gzip');
  t.equal(sniff(zip([{ name: 'a' }])), 'zip');
  t.equal(sniff(zip([])), 'zip', 'an empty zip (end record only)');
  t.equal(sniff(Buffer.from('hello world')), null);
  t.equal(sniff(Buffer.alloc(0)), null);
});

t.test('the writer creates parents, keeps inside links, and counts real bytes', async (t) => {
  const { dir, w } = fresh(t);
  await w.file('./a/b/c.txt', 0o4755, bytes('hello'));
  await w.symlink('a/link', 'b/c.txt');
  await w.hardlink('a/hard', 'a/b/c.txt');
  t.equal(readFileSync(join(dir, 'a/b/c.txt'), 'utf8'), 'hello');
  t.equal(lstatSync(join(dir, 'a/b/c.txt')).mode & 0o7777, 0o755, 'setuid is not even written');
  t.ok(lstatSync(join(dir, 'a/link')).isSymbolicLink());
  t.equal(lstatSync(join(dir, 'a/hard')).nlink, 2);
  t.equal(w.budget.bytes, 5);
  t.equal(w.budget.entries, 3);
});

t.test('link rules', async (t) => {
  const { dir, w } = fresh(t);
  await w.dir('d');
  await rejects(t, w.symlink('x', '/etc'), 'WORKSPACE_LINK_ESCAPE', 'symlink_absolute');
  await rejects(t, w.symlink('d/x', '../../etc'), 'WORKSPACE_LINK_ESCAPE', 'symlink_outside');
  await w.symlink('l', 'd');
  await rejects(t, w.symlink('m', 'l/f'), 'WORKSPACE_LINK_ESCAPE', 'symlink_through_link');
  await rejects(t, w.file('l/f', 0o644, bytes('x')), 'WORKSPACE_LINK_ESCAPE', 'path_through_link');
  await rejects(t, w.file('l', 0o644, bytes('x')), 'WORKSPACE_ENTRY_CONFLICT', 'overwrite_link');
  t.same(readdirSync(join(dir, 'd')), [], 'nothing was written through the link');
});

t.test('a later link on an earlier link\'s path is refused; hardlinks need an earlier regular file', async (t) => {
  const { w } = fresh(t);
  await w.symlink('a', 'b/c');
  await rejects(t, w.symlink('b', '.'), 'WORKSPACE_LINK_ESCAPE', 'symlink_redirects_earlier_link');
  await rejects(t, w.hardlink('h', '/etc/passwd'), 'WORKSPACE_LINK_ESCAPE', 'hardlink_absolute');
  await rejects(t, w.hardlink('h2', 'nothing'), 'WORKSPACE_LINK_ESCAPE', 'hardlink_target_not_earlier_file');
});

t.test('bounds name the limit', async (t) => {
  const { w } = fresh(t, 5);
  await rejects(t, w.file('big', 0o644, bytes('x'.repeat(101))), 'ARCHIVE_EXPANDED_TOO_LARGE');
  await rejects(t, w.file('a/b/c/d/e', 0o644, bytes('')), 'WORKSPACE_PATH_TOO_DEEP');
  await rejects(t, w.file('n'.repeat(65), 0o644, bytes('')), 'WORKSPACE_PATH_INVALID', 'too_long');
  for (let i = 0; i < 4; i++) await w.dir(`d${i}`);
  await rejects(t, w.dir('one-too-many'), 'ARCHIVE_TOO_MANY_ENTRIES');
  const b = new IntakeBudget(limits);
  t.doesNotThrow(() => b.checkRatio(1, 50), 'under the grace size the ratio is not checked');
  t.throws(() => b.checkRatio(5, 51), { code: 'ARCHIVE_COMPRESSION_RATIO' });
  t.throws(() => b.checkCompressed(1001), { code: 'ARCHIVE_TOO_LARGE' });
});

t.test('special entries are refused by type', async (t) => {
  const { w } = fresh(t);
  t.throws(() => w.special('dev/null', 'character_device'), { code: 'WORKSPACE_SPECIAL_FILE' });
});
