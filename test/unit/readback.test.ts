import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readTarGz } from '../helpers/archive.js';
import { OMITTED_LIST, openViewFile, packView, planView } from '../../src/workspace/readback.js';

// packView and openViewFile on a plain directory: the archive format and the per-file checks.
// (The nosymfollow view they run on in the server is covered by test/unit/storage.test.ts.)
const dir = mkdtempSync(join(tmpdir(), 'sbx-readback-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const longDir = 'd'.repeat(120);
const longName = 'f'.repeat(200);
const longTarget = `${'../'.repeat(100)}etc/passwd`;
mkdirSync(join(dir, longDir, 'sub'), { recursive: true });
writeFileSync(join(dir, longDir, 'sub', longName), 'long\n');
writeFileSync(join(dir, 'exec.sh'), '#!/bin/sh\n', { mode: 0o755 });
writeFileSync(join(dir, 'empty'), '');
writeFileSync(join(dir, 'big.bin'), Buffer.alloc(300_000, 7));
symlinkSync(longTarget, join(dir, 'longlink'));
symlinkSync('exec.sh', join(dir, 'short'));
execFileSync('mkfifo', [join(dir, 'fifo')]);

const pack = (limitBytes = 1 << 30) =>
  new Promise<{ buf: Buffer; done: { entries: number; skipped: number; omitted: number } }>(async (resolve, reject) => {
    const chunks: Buffer[] = [];
    let done: { entries: number; skipped: number; omitted: number } | undefined;
    const s = packView(dir, await planView(dir, limitBytes), (r) => (done = r));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve({ buf: Buffer.concat(chunks), done: done! }));
    s.on('error', reject);
  });

t.test('the archive: long names and link targets (pax), modes, sizes, links as links, no FIFO', async (t) => {
  const { buf, done } = await pack();
  const entries = await readTarGz(buf);
  const by = new Map(entries.map((e) => [e.path.replace(/\/$/, ''), e]));
  t.equal(by.get(`${longDir}/sub/${longName}`)?.content.toString(), 'long\n', 'a 330-byte path survives');
  t.match(by.get('longlink'), { type: 'SymbolicLink', linkpath: longTarget }, 'a 310-byte link target survives');
  t.match(by.get('short'), { type: 'SymbolicLink', linkpath: 'exec.sh' });
  t.equal((by.get('exec.sh')!.mode & 0o777), 0o755);
  t.equal(by.get('empty')?.content.length, 0);
  t.same(by.get('big.bin')?.content, Buffer.alloc(300_000, 7));
  t.match(by.get(longDir), { type: 'Directory' });
  t.notOk(by.has('fifo'), 'the FIFO is left out');
  t.same(done, { entries: entries.length, skipped: 1, omitted: 0 }, 'the FIFO is the one skipped entry');
  t.notOk(by.has(OMITTED_LIST), 'no omission list when nothing was left out');
  // GNU tar reads it too.
  const listed = execFileSync('tar', ['-tzf', '-'], { input: buf }).toString().trim().split('\n');
  t.ok(listed.includes(`${longDir}/sub/${longName}`));
});

t.test('one file: regular files only, never through a link', async (t) => {
  const limits = { maxDepth: 64, maxPathBytes: 4096 };
  const f = await openViewFile(dir, 'big.bin', limits, 1 << 30);
  t.equal(f.size, 300_000);
  const chunks: Buffer[] = [];
  for await (const c of f.stream) chunks.push(c as Buffer);
  t.equal(Buffer.concat(chunks).length, 300_000);
  await t.rejects(openViewFile(dir, 'short', limits, 1 << 30), { code: 'WORKSPACE_FILE_IS_LINK' });
  await t.rejects(openViewFile(dir, 'fifo', limits, 1 << 30), { code: 'WORKSPACE_FILE_NOT_REGULAR' }, 'a FIFO does not block');
  await t.rejects(openViewFile(dir, longDir, limits, 1 << 30), { code: 'WORKSPACE_FILE_NOT_REGULAR', details: { kind: 'directory' } });
  await t.rejects(openViewFile(dir, 'nope', limits, 1 << 30), { code: 'WORKSPACE_FILE_NOT_FOUND' });
  await t.rejects(openViewFile(dir, 'exec.sh/x', limits, 1 << 30), { code: 'WORKSPACE_FILE_NOT_FOUND' });
  await t.rejects(openViewFile(dir, '../etc/passwd', limits, 1 << 30), { code: 'WORKSPACE_PATH_ESCAPE' });
  const e = await openViewFile(dir, 'empty', limits, 1 << 30);
  t.equal(e.size, 0);
});

t.test('read-back never sends more file bytes than the limit', async (t) => {
  const limits = { maxDepth: 64, maxPathBytes: 4096 };
  await t.rejects(openViewFile(dir, 'big.bin', limits, 299_999), { code: 'WORKSPACE_FILE_TOO_LARGE', details: { path: 'big.bin', size: 300_000, limit: 299_999 } });
  t.equal((await openViewFile(dir, 'big.bin', limits, 300_000)).size, 300_000, 'a file of exactly the limit is sent');
  // 299 999: big.bin alone is over it; the other files (a few bytes) still fit.
  const { buf, done } = await pack(299_999);
  const entries = await readTarGz(buf);
  const by = new Map(entries.map((e) => [e.path.replace(/\/$/, ''), e]));
  t.notOk(by.has('big.bin'), 'the file larger than the limit is left out');
  t.equal(done.omitted, 1);
  t.equal(entries[entries.length - 1]!.path, OMITTED_LIST, 'the list is the last entry');
  t.equal(by.get(OMITTED_LIST)!.content.toString(), 'larger_than_quota\t300000\tbig.bin\n');
  t.ok(by.has('exec.sh'), 'the rest is there');
  // 300 010: big.bin fits alone but not with the files before it in the walk order.
  const second = await readTarGz((await pack(300_010)).buf);
  const list = second.find((e) => e.path === OMITTED_LIST)?.content.toString() ?? '';
  const sent = second.filter((e) => e.type === 'File' && e.path !== OMITTED_LIST).reduce((n, e) => n + e.content.length, 0);
  t.ok(sent <= 300_010, `file bytes sent (${sent}) within the limit`);
  t.match(list, /total_over_quota\t\d+\t/, 'a file that would pass the total is listed');
});
