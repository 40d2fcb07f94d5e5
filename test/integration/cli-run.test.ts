// `sandboxshift run`, run as the built CLI (dist/src/cli.js) against a real server: live streams,
// the task's exit code, .gitignore and links, --download, Ctrl-C, refusals.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { installDir } from '../../src/paths.js';
import { startTestServer } from '../helpers/server.js';

const cli = join(installDir(), 'dist', 'src', 'cli.js');
if (!existsSync(cli)) throw new Error(`${cli} is missing: run npm run build first`);

const server = await startTestServer();
t.teardown(() => server.close());
const root = mkdtempSync(join(tmpdir(), 'sbx-cli-run-'));
t.teardown(() => rmSync(root, { recursive: true, force: true }));

interface Run {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: boolean;
  done: Promise<number | null>;
  /** Resolves once `text` has appeared on the stream, saying whether the CLI was still running. */
  seen(stream: 'stdout' | 'stderr', text: string): Promise<boolean>;
}

function cliRun(args: string[]): Run {
  const child = spawn(process.execPath, [cli, '--url', server.url, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  const waiters: { stream: 'stdout' | 'stderr'; text: string; resolve: (v: boolean) => void }[] = [];
  const run: Run = {
    child,
    stdout: '',
    stderr: '',
    exited: false,
    done: new Promise((resolve) => child.on('exit', (code) => {
      run.exited = true;
      for (const w of waiters.splice(0)) w.resolve(false);
      resolve(code);
    })),
    seen(stream, text) {
      if (run[stream].includes(text)) return Promise.resolve(!run.exited);
      return new Promise((resolve) => waiters.push({ stream, text, resolve }));
    },
  };
  for (const stream of ['stdout', 'stderr'] as const) {
    child[stream]!.setEncoding('utf8');
    child[stream]!.on('data', (d: string) => {
      run[stream] += d;
      for (const w of [...waiters]) {
        if (w.stream === stream && run[stream].includes(w.text)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(!run.exited);
        }
      }
    });
  }
  return run;
}

function project(name: string, files: Record<string, string>): string {
  const dir = join(root, name);
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), content);
  }
  return dir;
}

t.test('streams stdout and stderr live, forwards stdin, exits with the task exit code', async (t) => {
  const dir = project('live', { 'hello.txt': 'hi\n' });
  const run = cliRun(['run', dir, '--stdin', '--', 'sh', '-c', 'echo first-out; echo first-err >&2; read x; echo "got $x"; echo late-err >&2; exit 7']);
  // The task blocks on stdin: both first lines must arrive before it is let go (30 s at most).
  const first = await Promise.race([Promise.all([run.seen('stdout', 'first-out\n'), run.seen('stderr', 'first-err\n')]), sleep(30_000).then(() => null)]);
  run.child.stdin!.end('go\n');
  t.same(first, [true, true], 'the first stdout and stderr lines arrive while the task still runs');
  t.equal(await run.done, 7, `exit code 7 (stderr: ${run.stderr})`);
  t.equal(run.stdout, 'first-out\ngot go\n', 'stdout holds exactly the task stdout');
  t.match(run.stderr, /first-err\n(.|\n)*late-err\n/, 'stderr holds the task stderr');
  t.notMatch(run.stdout, /err/, 'no stderr on stdout');
});

t.test('honours .gitignore, default excludes and links; --download brings back what the task wrote', async (t) => {
  const dir = project('tree', {
    '.gitignore': 'secret.txt\n/out/\n',
    'keep.txt': 'original\n',
    'same.txt': 'unchanged\n',
    'secret.txt': 'do not upload\n',
    'out/gen.txt': 'generated\n',
    'node_modules/dep/index.js': 'module.exports = 1;\n',
    '.git/HEAD': 'ref: refs/heads/main\n',
    'sub/.gitignore': '*.log\n',
    'sub/a.log': 'log\n',
    'sub/b.txt': 'b\n',
  });
  symlinkSync('keep.txt', join(dir, 'inside-link'));
  symlinkSync('/etc/passwd', join(dir, 'outside-link'));
  const download = join(root, 'downloaded');
  const list = 'find . -path ./.home -prune -o \\( -type f -o -type l \\) -print | sort';
  const run = cliRun(['run', dir, '--download', download, '--', `${list}; echo made > new.txt; mkdir -p deep/er; echo d > deep/er/f.txt; echo changed > keep.txt`]);
  t.equal(await run.done, 0, run.stderr);
  const seen = run.stdout.trim().split('\n');
  t.same(seen, ['./.gitignore', './inside-link', './keep.txt', './same.txt', './sub/.gitignore', './sub/b.txt'], 'exactly the files not ignored, and the inside link');
  t.match(run.stderr, /skipped outside-link: link target is absolute/, 'the link leaving the directory is skipped, and said so');
  t.equal(readFileSync(join(download, 'new.txt'), 'utf8'), 'made\n', 'a new file is downloaded');
  t.equal(readFileSync(join(download, 'deep/er/f.txt'), 'utf8'), 'd\n', 'a new file in a new directory is downloaded');
  t.equal(readFileSync(join(download, 'keep.txt'), 'utf8'), 'changed\n', 'a changed file is downloaded');
  t.notOk(existsSync(join(download, 'same.txt')), 'an unchanged file is not');
  t.notOk(existsSync(join(download, 'inside-link')), 'links are not downloaded');
  t.notOk(existsSync(join(download, '.home')), 'the task home is not downloaded');
});

t.test('Ctrl-C cancels the task on the server and exits 130', async (t) => {
  const dir = project('cancel', { 'a.txt': 'a\n' });
  const run = cliRun(['run', dir, '--', 'echo started; sleep 120']);
  t.equal(await run.seen('stdout', 'started\n'), true);
  run.child.kill('SIGINT');
  t.equal(await run.done, 130, run.stderr);
  const res = await fetch(`${server.url}/v1/tasks?limit=50`);
  const { tasks } = (await res.json()) as { tasks: { command: string; status: string }[] };
  t.equal(tasks.find((x) => x.command === 'echo started; sleep 120')?.status, 'cancelled', 'the server says cancelled');
});

t.test('a refusal prints the code and message and exits 125; --json gives one result line', async (t) => {
  const dir = project('refused', { 'a.txt': 'a\n' });
  const refused = cliRun(['run', dir, '--timeout', '99999999', '--', 'true']);
  t.equal(await refused.done, 125);
  t.match(refused.stderr, /^sandboxshift: LIMIT_ABOVE_MAXIMUM: /m);

  const json = cliRun(['run', dir, '--json', '--', 'sh', '-c', 'echo o; echo e >&2; exit 3']);
  t.equal(await json.done, 3);
  const lines = json.stdout.trim().split('\n');
  t.equal(lines.length, 1, 'one line');
  t.match(JSON.parse(lines[0]!), { status: 'failed', exitCode: 3, stdout: 'o\n', stderr: 'e\n' });
});

t.test('tasks, logs and cancel', async (t) => {
  const dir = project('listed', { 'a.txt': 'a\n' });
  const ran = cliRun(['run', dir, '--json', '--', 'echo listed-out; echo listed-err >&2']);
  t.equal(await ran.done, 0);
  const { taskId } = JSON.parse(ran.stdout) as { taskId: string };
  const tasks = cliRun(['tasks', '--status', 'succeeded', '--json']);
  t.equal(await tasks.done, 0);
  t.ok((JSON.parse(tasks.stdout) as { tasks: { id: string }[] }).tasks.some((x) => x.id === taskId), 'tasks --status lists it');
  const logs = cliRun(['logs', taskId]);
  t.equal(await logs.done, 0);
  t.equal(logs.stdout, 'listed-out\n');
  t.equal(logs.stderr, 'listed-err\n');
  const cancel = cliRun(['cancel', taskId]);
  t.equal(await cancel.done, 125);
  t.match(cancel.stderr, /^sandboxshift: TASK_NOT_ACTIVE: /);
});

t.test('an unreachable server exits 69', async (t) => {
  const child = spawn(process.execPath, [cli, '--url', 'http://127.0.0.1:9', 'tasks'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise((r) => child.on('exit', r));
  t.equal(code, 69);
  t.match(err, /UNREACHABLE/);
});
