import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { encodeJob, WAITER_SCRIPT } from '../../src/runtime/waiter.js';

// The waiter runs under dash (the images' /bin/sh) with a directory standing in for /workspace.
const dir = mkdtempSync(join(tmpdir(), 'waiter-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const script = WAITER_SCRIPT.replace('/workspace', dir);
const runWaiter = (input: string) => spawnSync('dash', ['-c', script], { input, encoding: 'utf8', cwd: '/' });

t.test('the job runs its command with its environment, in the workspace, with the rest of stdin', async (t) => {
  const nasty = "it's\nmulti $x `id` \\n '\"";
  const job = encodeJob('printf "%s|" "$A" "$HOME" "$(pwd)"; read x; echo "[$x]"; cat', { A: nasty, HOME: '/etc' }, { HOME: '/workspace/.home' });
  t.notOk(job.slice(0, -1).includes('\n'), 'one line');
  const r = runWaiter(`${job}line1\nrest\n`);
  t.equal(r.stdout, `${nasty}|/workspace/.home|${dir}|[line1]\nrest\n`);
  t.equal(r.status, 0);
});

t.test('the command is one argument of /bin/sh -c, whatever it holds', async (t) => {
  const r = runWaiter(encodeJob("echo 'a;b' \"$0\" && exit 7", {}, {}));
  t.equal(r.stdout, 'a;b /bin/sh\n');
  t.equal(r.status, 7);
});

t.test('no job: exit 125, nothing runs', async (t) => {
  const r = runWaiter('');
  t.equal(r.status, 125);
  t.equal(r.stdout, '');
});

t.test('the waiter variables are not exported to the task', async (t) => {
  const r = runWaiter(encodeJob('env | grep -c "^\\(job\\|nl\\)=" || true', {}, {}));
  t.equal(r.stdout.trim(), '0');
});

t.test('secrets reach the command environment, in no process argument; env and server names win', async (t) => {
  const secret = "s3cr3t 'quoted'\nline";
  // The waiter execs the task's shell (same PID): its arguments are all the job ever passed.
  const job = encodeJob('tr "\\0" " " < /proc/$$/cmdline; printf "|%s|%s|%s" "$TOKEN" "$PLAIN" "$HOME"', { PLAIN: 'env' }, { HOME: '/workspace/.home' }, [], {
    TOKEN: secret,
    PLAIN: 'secret-plain',
    HOME: 'secret-home',
  });
  t.notOk(job.slice(0, -1).includes('\n'), 'one line');
  const r = runWaiter(job);
  const parts = r.stdout.split('|');
  const values = parts.splice(-3);
  const argv = parts.join('|');
  t.match(argv, /^\/bin\/sh -c tr /, 'the task shell is the only process the job made');
  t.notOk(/s3cr3t|secret-plain|secret-home/.test(argv), 'no secret value is a process argument');
  t.same(values, [secret, 'env', '/workspace/.home']);
  t.equal(r.status, 0);
});

t.test("task variables named like the waiter's own do not change how the job line reads", async (t) => {
  const r = runWaiter(encodeJob('printf "[%s][%s][%s][%s]" "$nl" "$job" "$B" "$C"\necho "line two"', { nl: 'N\nM', job: 'J', B: 'one\ntwo' }, { C: 'x\ny' }));
  t.equal(r.stdout, '[N\nM][J][one\ntwo][x\ny]line two\n');
  t.equal(r.status, 0);
});

t.test('later names win: secrets, then the task environment, then the forced variables', async (t) => {
  const r = runWaiter(encodeJob('printf "%s|%s|%s" "$A" "$B" "$C"', { A: 'env', B: 'env' }, { B: 'forced' }, [], { A: 'secret', C: 'secret' }));
  t.equal(r.stdout, 'env|forced|secret');
});
