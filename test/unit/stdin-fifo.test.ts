import { execFileSync, spawn } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { frames, STDIN_FRAME_MAX, StdinFifos } from '../../src/runtime/stdin-fifo.js';

const relaySource = fileURLToPath(new URL('../../images/relay/sbx-relay.c', import.meta.url));

t.test('frames: 2-byte big-endian length, at most STDIN_FRAME_MAX bytes each, so a frame fits in PIPE_BUF', async (t) => {
  t.equal(STDIN_FRAME_MAX + 2, 4096);
  t.same(frames(Buffer.alloc(0)), []);
  const f = frames(Buffer.from('hi'));
  t.same([...f[0]!], [0, 2, 0x68, 0x69]);
  const big = frames(Buffer.alloc(STDIN_FRAME_MAX * 2 + 1, 7));
  t.same(big.map((b) => b.length), [4096, 4096, 3]);
  t.same(big.map((b) => b.readUInt16BE(0)), [STDIN_FRAME_MAX, STDIN_FRAME_MAX, 1]);
});

t.test('the pipe directory: the server keeps the directory, the task owns only its pipe; swept unless kept', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'sbx-stdin-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const fifos = new StdinFifos(root);
  const dir = fifos.create('tsk_one', '65532:65532');
  fifos.create('tsk_two', '65532:65532');
  const d = statSync(dir);
  t.equal(d.uid, process.getuid!(), 'the directory is the server user\'s');
  t.equal(d.mode & 0o777, 0o711, 'the task cannot add files to it');
  const p = lstatSync(join(dir, 'stdin.fifo'));
  t.ok(p.isFIFO());
  t.equal(p.uid, 65532);
  t.equal(p.mode & 0o777, 0o600);
  t.throws(() => fifos.dir('../etc'), /not a task id/);
  fifos.sweep(new Set(['tsk_two']));
  t.same(readdirSync(root), ['tsk_two']);
  t.equal(fifos.open('tsk_one'), null, 'no pipe, no writer');
});

// The relay compiled on this host, reading the pipe as it does inside a container.
t.test('relay --stdin: frames from two writers in turn become one stdin; a writer going away is not EOF', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'sbx-stdin-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const relay = join(root, 'sbx-relay');
  execFileSync('gcc', ['-static', '-Os', '-s', '-Wall', '-o', relay, relaySource]);
  const fifos = new StdinFifos(root);
  const dir = fifos.create('tsk_relay', `${process.getuid!()}:${process.getgid!()}`);
  const child = spawn(relay, ['--stdin', join(dir, 'stdin.fifo'), '--', '/bin/sh', '-c', 'wc -c; echo done'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', r));
  const first = fifos.open('tsk_relay')!;
  first.write(Buffer.alloc(100_000, 'a')); // more than the pipe holds: part of it waits in the queue
  t.ok(first.queued > 0, `${first.queued} bytes wait for room in the pipe`);
  await first.flush(10_000);
  t.equal(first.queued, 0, 'the queue drains as the relay reads');
  first.close(); // the server went away
  const second = fifos.open('tsk_relay')!; // the next server
  second.write(Buffer.from('bc'));
  second.end();
  t.notOk(second.write(Buffer.from('late')), 'nothing is taken after EOF');
  await second.flush(10_000);
  t.equal(await exited, 0);
  t.equal(out, '100002\ndone\n', 'every byte once, then EOF');
  second.close();
});
