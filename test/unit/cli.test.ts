// The CLI's pure parts: the command line built from the words after `--`, and the exit codes.
import { spawnSync } from 'node:child_process';
import t from 'tap';
import { EXIT, exitCodeFor } from '../../src/cli/exit-codes.js';
import { commandLine, shellQuote } from '../../src/cli/shell.js';

t.test('one word is the shell command line; several are quoted and joined', async (t) => {
  t.equal(commandLine(['make && make test']), 'make && make test');
  t.equal(commandLine(['sh', '-c', 'ls; exit 7']), "sh -c 'ls; exit 7'");
  t.equal(commandLine(['echo', "it's", '', '$HOME', 'a b']), `echo 'it'\\''s' '' '$HOME' 'a b'`);
  t.throws(() => commandLine([]));
  // What /bin/sh makes of the joined line is exactly the words given.
  const words = ['printf', '%s|', "it's", '$HOME', 'a b', '*', '"q"', 'back\\slash', '`x`', ''];
  const r = spawnSync('/bin/sh', ['-c', commandLine(words)], { encoding: 'utf8', env: { HOME: '/nowhere' } });
  t.equal(r.stdout, `${words.slice(2).join('|')}|`);
  t.equal(shellQuote('safe-word_1.txt'), 'safe-word_1.txt');
});

t.test('exit codes: the task exit code, or the documented ones', async (t) => {
  t.equal(exitCodeFor({ status: 'succeeded', exitCode: 0, reason: null }), 0);
  t.equal(exitCodeFor({ status: 'failed', exitCode: 7, reason: null }), 7);
  t.equal(exitCodeFor({ status: 'failed', exitCode: 137, reason: 'oom' }), EXIT.OOM);
  t.equal(exitCodeFor({ status: 'timed_out', exitCode: 137, reason: 'timeout' }), EXIT.TIMEOUT);
  t.equal(exitCodeFor({ status: 'cancelled', exitCode: 137, reason: 'cancelled' }), EXIT.CANCELLED);
  t.equal(exitCodeFor({ status: 'error', exitCode: null, reason: 'engine_error' }), EXIT.TASK_ERROR);
  t.same(EXIT, { USAGE: 64, UNREACHABLE: 69, TASK_ERROR: 70, TIMEOUT: 124, REFUSED: 125, CANCELLED: 130, OOM: 137 }, 'as the README lists them');
});
