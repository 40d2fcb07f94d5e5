import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { SecretFiles, shellExports } from '../../src/runtime/secret-file.js';

const shm = '/dev/shm';

t.test('the exports a POSIX shell sources give back every value byte for byte', async (t) => {
  const env = { QUOTE: "it's a 'test'", LINES: 'one\ntwo\n', SHELLY: '$(touch /tmp/x) `id` $HOME \\ "', EMPTY: '', UTF: 'clé€😀' };
  const script = `${shellExports(env)}for n in QUOTE LINES SHELLY EMPTY UTF; do eval "printf '%s\\\\0' \\"\\$$n\\""; done`;
  const out = execFileSync('/bin/sh', ['-c', script]).toString().split('\0').slice(0, -1);
  t.same(out, Object.values(env));
});

t.test('files: 0400 for the container user, in a root-only tmpfs directory; removed and swept', async (t) => {
  const base = mkdtempSync(join(shm, 'sbx-secrets-test-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  chmodSync(base, 0o700);
  const files = new SecretFiles(join(base, 'srv_1'));
  const path = files.write('tsk_a', { TOKEN: 'hunter2' }, '65532:65532');
  const st = statSync(path);
  t.equal(st.mode & 0o777, 0o400);
  t.equal(st.uid, 65532);
  t.equal(st.gid, 65532);
  t.equal(statSync(join(base, 'srv_1')).mode & 0o777, 0o700);
  t.equal(readFileSync(path, 'utf8'), "export TOKEN='hunter2'\n");
  files.write('tsk_b', { TOKEN: 'x' }, '65532:65532');
  files.sweep(new Set(['tsk_b']));
  t.notOk(existsSync(path), 'sweep removes the files of tasks not kept');
  t.ok(existsSync(join(base, 'srv_1', 'tsk_b.env')));
  files.remove('tsk_b');
  t.notOk(existsSync(join(base, 'srv_1', 'tsk_b.env')));
  t.throws(() => files.write('../x', {}, '65532:65532'), /not a task id/);
});

t.test('refused: a directory others may enter, or one on disk', async (t) => {
  const open = mkdtempSync(join(shm, 'sbx-secrets-test-'));
  t.teardown(() => rmSync(open, { recursive: true, force: true }));
  chmodSync(open, 0o755);
  t.throws(() => new SecretFiles(join(open, 'srv_1')).write('tsk_a', { A: '1' }, '65532:65532'), /mode 0700/);
  const disk = mkdtempSync(join(tmpdir(), 'sbx-secrets-test-'));
  t.teardown(() => rmSync(disk, { recursive: true, force: true }));
  chmodSync(disk, 0o700);
  mkdirSync(join(disk, 'srv_1'), { mode: 0o700 });
  const onDisk = statSync(disk).dev !== statSync(shm).dev;
  if (onDisk) t.throws(() => new SecretFiles(join(disk, 'srv_1')).write('tsk_a', { A: '1' }, '65532:65532'), /not on a tmpfs/);
  t.notOk(existsSync(join(disk, 'srv_1', 'tsk_a.env')), 'nothing written');
});
