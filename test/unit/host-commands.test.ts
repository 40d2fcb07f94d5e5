import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { HostCommandError, HostCommands } from '../../src/workspace/host-commands.js';

const dir = mkdtempSync(join(tmpdir(), 'host-commands-'));
const helper = new HostCommands();
t.teardown(() => {
  helper.close();
  rmSync(dir, { recursive: true, force: true });
});

t.test('every word reaches the command as one argument, whatever it holds', async (t) => {
  const words = ['a b', "it's", 'line1\nline2', '$HOME', '`id`', '', '*', '-n'];
  const out = join(dir, 'args');
  await helper.run('/bin/sh', ['-c', 'for a in "$@"; do printf "[%s]" "$a"; done > "$0"', out, ...words]);
  t.equal(readFileSync(out, 'utf8'), words.map((w) => `[${w}]`).join(''));
});

t.test('a command’s output comes back; a failure rejects with its exit code and stderr', async (t) => {
  t.equal(await helper.run('echo', ['hello']), 'hello');
  const err = await helper.run('/bin/sh', ['-c', 'echo "not mounted" >&2; exit 32']).catch((e: unknown) => e);
  t.type(err, HostCommandError);
  t.equal((err as HostCommandError).code, 32);
  t.match((err as HostCommandError).stderr, /not mounted/);
  t.match((err as Error).message, /exit 32.*not mounted/);
  const missing = await helper.run('/no/such/binary', []).catch((e: unknown) => e);
  t.equal((missing as HostCommandError).code, 127);
});

t.test('commands run at once: a slow one holds back no other', async (t) => {
  const h = new HostCommands();
  let slowDone = false;
  const slow = h.run('sleep', ['30']).then(
    () => (slowDone = true),
    () => (slowDone = true),
  );
  const r = await Promise.all([3, 1, 2].map((n) => h.run('/bin/sh', ['-c', `sleep 0.${n}; echo ${n}`])));
  t.same(r, ['3', '1', '2'], 'each answer to its own call');
  t.notOk(slowDone, 'answered while the slow command still runs');
  (h as unknown as { child: { kill(s: string): void } }).child.kill('SIGKILL');
  await slow;
});

t.test('a helper that died is started again; its pending commands reject', async (t) => {
  const h = new HostCommands();
  t.teardown(() => h.close());
  const pending = h.run('sleep', ['30']);
  await new Promise((r) => setTimeout(r, 100));
  (h as unknown as { child: { kill(s: string): void } }).child.kill('SIGKILL');
  await t.rejects(pending, /helper exited/);
  t.equal(await h.run('echo', ['again']), 'again');
  t.rejects(h.run('echo', ['a\0b']), /NUL/);
});
