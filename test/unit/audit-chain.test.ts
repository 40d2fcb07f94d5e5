// The audit chain on real files: records, rotation, verification of edits, removals and moves,
// appends from several processes at once, torn lines and a lock left by a dead process.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { chainFiles } from '../../src/audit/files.js';
import { AuditLog } from '../../src/audit/log.js';
import { queryAudit } from '../../src/audit/query.js';
import { canonicalJson, GENESIS_HASH, recordHash, type AuditRecord } from '../../src/audit/record.js';
import { verifyChain } from '../../src/audit/verify.js';

function tempLog(t: { teardown(fn: () => void): void }, rotateBytes = 1024 * 1024) {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-audit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'audit.jsonl');
  return { dir, path, log: new AuditLog(path, rotateBytes) };
}

const entry = (i: number, extra: Record<string, unknown> = {}) => ({ event: 'task.submitted', tenant: 'acme', keyId: 'k1', taskId: `tsk_${i}`, i, ...extra }) as never;
const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean);
const records = (path: string) => lines(path).map((l) => JSON.parse(l) as AuditRecord);

t.test('canonical JSON: sorted keys at every level, no white space', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [1, { z: 1, y: 'x' }], c: null } }), '{"a":{"c":null,"d":[1,{"y":"x","z":1}]},"b":1}');
});

t.test('records: compact lines, seq from 1, each carrying the hash of the one before', async (t) => {
  const { path, log } = tempLog(t);
  for (let i = 1; i <= 3; i++) log.append(entry(i));
  const rs = records(path);
  t.same(rs.map((r) => r.seq), [1, 2, 3]);
  t.equal(rs[0]!.prevHash, GENESIS_HASH);
  t.equal(rs[1]!.prevHash, rs[0]!.hash);
  t.equal(rs[2]!.prevHash, rs[1]!.hash);
  for (const r of rs) {
    t.equal(r.hash, recordHash(r), 'the hash covers the record (prevHash included)');
    t.match(r, { event: 'task.submitted', tenant: 'acme', keyId: 'k1', time: /^\d{4}-\d\d-\d\dT/ });
  }
  for (const l of lines(path)) t.equal(l, JSON.stringify(JSON.parse(l)), 'one compact object per line');
  t.same(await verifyChain(path), { ok: true, records: 3, files: 1, lastSeq: 3 });
  // An entry cannot set the fields the log owns.
  log.append({ event: 'x.y', tenant: null, keyId: null, seq: 99, hash: 'h', prevHash: 'p', time: 'then' } as never);
  t.equal(records(path)[3]!.seq, 4);
  t.ok((await verifyChain(path)).ok);
});

t.test('an edited, a removed and a swapped record are each found and named', async (t) => {
  const { path, log } = tempLog(t);
  for (let i = 1; i <= 6; i++) log.append(entry(i));
  const original = lines(path);
  const write = (ls: string[]) => writeFileSync(path, `${ls.join('\n')}\n`);

  const edited = [...original];
  edited[2] = edited[2]!.replace('"tsk_3"', '"tsk_X"');
  write(edited);
  let r = await verifyChain(path);
  t.match(r, { ok: false, problem: 'edited', seq: 3, at: { line: 3 } });

  // Edited with its own hash recomputed: the next record's prevHash gives it away.
  const rehashed = [...original];
  const rec = JSON.parse(rehashed[2]!) as AuditRecord;
  rec.command = 'rm -rf /';
  rec.hash = recordHash(rec);
  rehashed[2] = canonicalJson(rec);
  write(rehashed);
  r = await verifyChain(path);
  t.match(r, { ok: false, problem: 'edited', seq: 3 });

  write(original.filter((_, i) => i !== 3));
  r = await verifyChain(path);
  t.match(r, { ok: false, problem: 'removed', seq: 4 });
  if (!r.ok) t.match(r.message, /record seq 4 was removed/);

  write(original.filter((_, i) => i !== 0));
  t.match(await verifyChain(path), { ok: false, problem: 'removed', seq: 1 }, 'the first record too');

  const swapped = [...original];
  [swapped[1], swapped[2]] = [swapped[2]!, swapped[1]!];
  write(swapped);
  r = await verifyChain(path);
  t.match(r, { ok: false, problem: 'reordered', seq: 2, at: { line: 3 } });

  const junk = [...original];
  junk.splice(2, 0, 'not json');
  write(junk);
  t.match(await verifyChain(path), { ok: false, problem: 'not_a_record', seq: 3, at: { line: 3 } });

  write(original);
  t.ok((await verifyChain(path)).ok, 'the untouched log holds');
});

t.test('rotation: past rotateBytes the file is renamed after its first seq and the chain continues', async (t) => {
  const { path, dir, log } = tempLog(t, 1000);
  for (let i = 1; i <= 30; i++) log.append(entry(i, { pad: 'x'.repeat(100) }));
  const files = chainFiles(path);
  t.ok(files.length >= 5, `${files.length} files`);
  t.same(files.at(-1), { path, firstSeq: null }, 'the current file last');
  for (const f of files) {
    const rs = records(f.path);
    if (f.firstSeq !== null) t.equal(rs[0]!.seq, f.firstSeq, `${f.path} is named after its first seq`);
    t.ok(readFileSync(f.path).length <= 1000, 'no file grows past rotateBytes');
  }
  t.same(await verifyChain(path), { ok: true, records: 30, files: files.length, lastSeq: 30 });
  t.notOk(readdirSync(dir).some((n) => n.endsWith('.lock')), 'no lock file left behind');

  // A record removed from a rotated file, and two swapped across a file boundary, are found.
  const second = files[1]!.path;
  const keep = readFileSync(second, 'utf8');
  writeFileSync(second, `${lines(second).slice(1).join('\n')}\n`);
  t.match(await verifyChain(path), { ok: false, problem: 'removed', seq: files[1]!.firstSeq });
  writeFileSync(second, keep);
  const first = files[0]!.path;
  const keepFirst = readFileSync(first, 'utf8');
  const a = lines(first);
  const b = lines(second);
  const lastOfFirst = a.pop()!;
  const firstOfSecond = b.shift()!;
  writeFileSync(first, `${[...a, firstOfSecond].join('\n')}\n`);
  writeFileSync(second, `${[lastOfFirst, ...b].join('\n')}\n`);
  t.match(await verifyChain(path), { ok: false, problem: 'reordered', seq: a.length + 1 }, 'the last record of the first file is found moved');
  writeFileSync(first, keepFirst);
  writeFileSync(second, keep);
  t.ok((await verifyChain(path)).ok);

  // Queries page across files by seq.
  const page1 = await queryAudit(path, { limit: 12 });
  t.same(page1.records.map((r) => r.seq), Array.from({ length: 12 }, (_, i) => i + 1));
  t.equal(page1.more, true);
  const page3 = await queryAudit(path, { limit: 12, afterSeq: 24 });
  t.same(page3.records.map((r) => r.seq), [25, 26, 27, 28, 29, 30]);
  t.equal(page3.more, false);
  t.same((await queryAudit(path, { limit: 50, taskId: 'tsk_7' })).records.map((r) => r.seq), [7]);
});

t.test('a log whose last write was torn goes on in a line of its own; verify names the torn line', async (t) => {
  const { path, log } = tempLog(t);
  log.append(entry(1));
  log.append(entry(2));
  writeFileSync(path, readFileSync(path, 'utf8') + '{"seq":3,"ti', { flag: 'w' });
  log.append(entry(3));
  const ls = readFileSync(path, 'utf8').split('\n');
  t.equal(ls[2], '{"seq":3,"ti', 'the torn line is kept as it was');
  t.equal((JSON.parse(ls[3]!) as AuditRecord).seq, 3, 'the chain continues from the last whole record');
  t.match(await verifyChain(path), { ok: false, problem: 'not_a_record', at: { line: 3 } });
});

t.test('a lock file left by a process that died is taken over', async (t) => {
  const { path, log } = tempLog(t);
  // A pid that is not running: a child that has exited.
  const child = spawn(process.execPath, ['-e', '0']);
  const pid = child.pid!;
  await new Promise((r) => child.once('exit', r));
  writeFileSync(`${path}.lock`, `${pid}\n`);
  log.append(entry(1));
  t.equal(records(path).length, 1);
  t.notOk(existsSync(`${path}.lock`));
});

t.test('a lock held by a live process is waited for, not broken', async (t) => {
  const { path } = tempLog(t);
  writeFileSync(`${path}.lock`, `${process.pid === 1 ? 2 : 1}\n`); // pid 1 is always alive
  const log = new AuditLog(path, 1024 * 1024, undefined, 500);
  // Held by a live process beyond the wait: the append fails rather than break the lock.
  const started = Date.now();
  t.throws(() => log.append(entry(1)), /is held by process/);
  t.ok(Date.now() - started >= 450, 'it waited for the holder');
  t.ok(existsSync(`${path}.lock`), 'the lock is still there');
  t.notOk(existsSync(path), 'nothing was written');
});

t.test('several processes appending at once (with rotation) make one chain', async (t) => {
  const { path } = tempLog(t);
  const helper = fileURLToPath(new URL('../helpers/audit-append.ts', import.meta.url));
  const writers = ['a', 'b', 'c'];
  const count = 150;
  await Promise.all(
    writers.map(
      (w) =>
        new Promise<void>((resolve, reject) => {
          const child = spawn(process.execPath, [...process.execArgv, helper, path, '8192', String(count), w], { stdio: ['ignore', 'ignore', 'inherit'] });
          child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${w} exited ${code}`))));
        }),
    ),
  );
  const result = await verifyChain(path);
  t.same(result, { ok: true, records: writers.length * count, files: chainFiles(path).length, lastSeq: writers.length * count });
  const all = (await queryAudit(path, { limit: 1000 })).records;
  for (const w of writers) t.equal(all.filter((r) => r.writer === w).length, count, `every record of writer ${w} is there`);
  t.ok(chainFiles(path).length > 1, 'the log rotated meanwhile');
});
