import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fromInstall } from '../../src/paths.js';
import { HostCommandError, HostCommands } from '../../src/workspace/host-commands.js';
import { buildCHelper } from '../../src/workspace/idmap.js';

const dir = mkdtempSync(join(tmpdir(), 'host-commands-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const compiled = await buildCHelper(fromInstall('deploy/host-helper/host_helper.c'), [join(dir, 'bin')], 'host-helper');

const kill = (h: HostCommands) => (h as unknown as { current: { child: { kill(s: string): void } } }).current.child.kill('SIGKILL');

// Both helpers behave alike: the bash script and the compiled host helper.
for (const kind of ['bash', 'compiled'] as const) {
  const make = () => {
    const h = new HostCommands();
    if (kind === 'compiled') h.use(compiled);
    return h;
  };

  t.test(`${kind} helper`, async (t) => {
    const helper = make();
    t.teardown(() => helper.close());

    t.test('every word reaches the command as one argument, whatever it holds', async (t) => {
      const words = ['a b', "it's", 'line1\nline2', '$HOME', '`id`', '', '*', '-n'];
      const out = join(dir, `args-${kind}`);
      await helper.run('/bin/sh', ['-c', 'for a in "$@"; do printf "[%s]" "$a"; done > "$0"', out, ...words]);
      t.equal(readFileSync(out, 'utf8'), words.map((w) => `[${w}]`).join(''));
    });

    t.test('a command’s output comes back; a failure rejects with its exit code and stderr', async (t) => {
      t.equal(await helper.run('echo', ['hello']), 'hello');
      t.equal(await helper.run('printf', ['a\\nb\\n\\n']), 'a b', 'trailing newlines dropped, the others spaces');
      const err = await helper.run('/bin/sh', ['-c', 'echo "not mounted" >&2; exit 32']).catch((e: unknown) => e);
      t.type(err, HostCommandError);
      t.equal((err as HostCommandError).code, 32);
      t.match((err as HostCommandError).stderr, /not mounted/);
      t.match((err as Error).message, /exit 32.*not mounted/);
      const missing = await helper.run('/no/such/binary', []).catch((e: unknown) => e);
      t.equal((missing as HostCommandError).code, 127);
      const long = await helper.run('/bin/sh', ['-c', 'head -c 100000 /dev/zero | tr "\\0" x']);
      t.equal(long.length, 2000, 'output kept to 2000 bytes');
    });

    t.test('commands run at once: a slow one holds back no other', async (t) => {
      const h = make();
      let slowDone = false;
      const slow = h.run('sleep', ['30']).then(
        () => (slowDone = true),
        () => (slowDone = true),
      );
      const r = await Promise.all([3, 1, 2].map((n) => h.run('/bin/sh', ['-c', `sleep 0.${n}; echo ${n}`])));
      t.same(r, ['3', '1', '2'], 'each answer to its own call');
      t.notOk(slowDone, 'answered while the slow command still runs');
      kill(h);
      await slow;
    });

    t.test('a helper that died is started again; its pending commands reject', async (t) => {
      const h = make();
      t.teardown(() => h.close());
      const pending = h.run('sleep', ['30']);
      await new Promise((r) => setTimeout(r, 100));
      kill(h);
      await t.rejects(pending, /helper exited/);
      t.equal(await h.run('echo', ['again']), 'again');
      t.rejects(h.run('echo', ['a\0b']), /NUL/);
    });

    t.test('many commands at once each get their own answer', async (t) => {
      const r = await Promise.all(Array.from({ length: 200 }, (_, i) => helper.run('echo', [`n${i}`])));
      t.same(r, Array.from({ length: 200 }, (_, i) => `n${i}`));
    });
  });
}

t.test('switching helpers: commands sent to the first are still answered', async (t) => {
  const h = new HostCommands();
  t.teardown(() => h.close());
  const first = h.run('/bin/sh', ['-c', 'sleep 0.3; echo from-bash']);
  h.use(compiled);
  t.equal(h.helperPath, compiled);
  t.equal(await h.run('echo', ['from-compiled']), 'from-compiled');
  t.equal(await first, 'from-bash');
});
