import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LogCursor } from '../../src/streaming/cursor.js';
import { TaskLog } from '../../src/streaming/tasklog.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-log-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const readAll = (log: TaskLog, after = 0) => {
  const c = new LogCursor(log, after, 64);
  const out: number[] = [];
  for (let lines = c.read(); lines.length; lines = c.read()) out.push(...lines.map((l) => (JSON.parse(l) as { seq: number }).seq));
  c.close();
  return out;
};

t.test('seq numbering, replay from any point, and reopening after a restart', async (t) => {
  const d = join(dir, 'a');
  const log = TaskLog.open(d);
  log.append({ type: 'status', status: 'queued' });
  for (let i = 0; i < 1000; i++) log.append({ type: 'stdout', data: `line ${i} é\n` });
  t.equal(log.seq, 1001);
  t.same(readAll(log), Array.from({ length: 1001 }, (_, i) => i + 1));
  for (const after of [0, 1, 255, 256, 257, 512, 999, 1001, 5000]) {
    t.same(readAll(log, after), Array.from({ length: Math.max(0, 1001 - after) }, (_, i) => after + i + 1), `after=${after}`);
  }
  log.release();
  const again = TaskLog.open(d);
  t.equal(again.seq, 1001, 'the last seq is recovered');
  t.notOk(again.finished);
  again.append({ type: 'exit', status: 'succeeded', exitCode: 0, reason: null, durationMs: 1 });
  t.ok(again.finished, 'the exit frame closes the log');
  t.throws(() => again.append({ type: 'stdout', data: 'x' }), /closed/);
  t.ok(TaskLog.open(d).finished, 'a finished log reopens finished');
  t.same(readAll(TaskLog.open(d), 1000), [1001, 1002]);
});

t.test('a torn last line from a crash is dropped so appends stay well-formed', async (t) => {
  const d = join(dir, 'b');
  const log = TaskLog.open(d);
  log.append({ type: 'status', status: 'queued' });
  log.append({ type: 'status', status: 'running' });
  log.release();
  appendFileSync(join(d, 'frames.ndjson'), '{"type":"stdout","da');
  const again = TaskLog.open(d);
  t.equal(again.seq, 2);
  again.append({ type: 'stdout', data: 'ok' });
  const lines = readFileSync(join(d, 'frames.ndjson'), 'utf8').trim().split('\n');
  t.same(lines.map((l) => JSON.parse(l).seq), [1, 2, 3]);
});

t.test('exact stream bytes are kept beside the frames', async (t) => {
  const d = join(dir, 'c');
  const log = TaskLog.open(d);
  log.appendBytes('stdout', Buffer.from([0xff, 0x00, 0x41]));
  log.appendBytes('stdout', Buffer.from('B'));
  log.append({ type: 'exit', status: 'succeeded', exitCode: 0, reason: null, durationMs: 0 });
  t.same([...readFileSync(join(d, 'stdout.bin'))], [0xff, 0x00, 0x41, 0x42]);
});
