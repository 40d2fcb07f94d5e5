import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { TaskLog } from '../../src/streaming/tasklog.js';
import type { TaskRecord } from '../../src/tasks/model.js';
import { TaskRun } from '../../src/tasks/run.js';

const SECRET = 'hunter2-Zq';
const bounds = { headBytes: 1 << 20, tailBytes: 1 << 20, frameBytes: 1024 };

function run(t: Tap.Test, dir: string) {
  const log = TaskLog.open(dir);
  t.teardown(() => log.release());
  return new TaskRun({ id: 'tsk_a' } as TaskRecord, log, bounds, { TOKEN: SECRET });
}

t.test('the checkpoint never lands where a mask holds back part of a value; a later run re-reads from it masked, once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-run-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = run(t, dir);
  first.openCaptures(null, false);
  first.recordContainer('c1');
  const h = first.handlers();
  // The engine's log as raw bytes; positions are offsets in it.
  const raw = Buffer.from(`a:${SECRET}\nb:${SECRET}\n`);
  const cut = raw.indexOf('hunter2', 4) + 4; // inside the second value
  h.onOutput('stdout', raw.subarray(0, cut));
  h.onPosition!({ ino: 1, offset: cut });
  t.same(first.readCheckpoint()?.position, null, 'no checkpoint while "hunt" is held back');
  // The server dies here. A new run adopts the container from the checkpoint it left.
  const second = run(t, dir);
  const from = second.readCheckpoint();
  second.openCaptures(from, true);
  const offset = from?.position?.offset ?? 0;
  second.handlers().onOutput('stdout', raw.subarray(offset));
  second.finishOutput();
  t.equal(readFileSync(join(dir, 'stdout.bin'), 'utf8'), 'a:***\nb:***\n', 'every value masked, no byte twice');
});

t.test('where nothing is held, the checkpoint advances', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-run-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = run(t, dir);
  r.openCaptures(null, false);
  r.recordContainer('c1');
  r.handlers().onOutput('stdout', Buffer.from(`x:${SECRET}\n`));
  r.handlers().onPosition!({ ino: 1, offset: 13 });
  t.match(r.readCheckpoint(), { position: { offset: 13 }, produced: { stdout: 'x:***\n'.length } }, 'produced counts the masked bytes');
});
