import { appendFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { EngineLogFollower, EngineLogParser } from '../../src/runtime/enginelog.js';

const TS = '2026-12-03T08:00:00.123456789+00:00';

function parse(chunks: Array<string | Buffer>): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const p = new EngineLogParser((stream, data) => out.push([stream, data.toString('utf8')]));
  for (const c of chunks) p.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return out;
}

t.test('full and partial records of each stream, consecutive records of a stream joined', async (t) => {
  const log = [`${TS} stdout F one`, `${TS} stdout P tw`, `${TS} stdout F o`, `${TS} stderr F err`, `${TS} stdout F `, ''].join('\n');
  t.same(parse([log]), [
    ['stdout', 'one\ntwo\n'],
    ['stderr', 'err\n'],
    ['stdout', '\n'],
  ]);
});

t.test('a record split anywhere across reads comes out whole, once', async (t) => {
  const log = Buffer.from(`${TS} stdout F héllo wörld\n${TS} stderr P no newline\n`);
  const whole = parse([log]);
  t.same(whole, [['stdout', 'héllo wörld\n'], ['stderr', 'no newline']]);
  for (let cut = 1; cut < log.length; cut++) {
    const parts = parse([log.subarray(0, cut), log.subarray(cut)]);
    const joined = new Map<string, string>();
    for (const [s, d] of parts) joined.set(s, (joined.get(s) ?? '') + d);
    t.same(Object.fromEntries(joined), { stdout: 'héllo wörld\n', stderr: 'no newline' }, `cut at ${cut}`);
  }
});

t.test('a time stamp of another width is read by its spaces; lines of another shape are skipped', async (t) => {
  const log = [
    '2026-12-03T08:00:00.1Z stdout F short stamp',
    `${TS} stdout F spaces  inside  `,
    'garbage without fields',
    `${TS} stdin F not a stream`,
    `${TS} stdout`,
    `${TS} stderr P x`,
    '',
  ].join('\n');
  t.same(parse([log]), [
    ['stdout', 'short stamp\nspaces  inside  \n'],
    ['stderr', 'x'],
  ]);
});

t.test('consume takes the complete records and leaves an incomplete one to the caller', async (t) => {
  const seen: string[] = [];
  const p = new EngineLogParser((s, data) => seen.push(`${s}:${data.toString()}`));
  const whole = `${TS} stdout F first\n`;
  const buf = Buffer.from(`${whole}${TS} stderr F sec`);
  t.equal(p.consume(buf), Buffer.byteLength(whole));
  t.same(seen, ['stdout:first\n']);
  t.equal(p.consume(Buffer.from(`${TS} stderr F sec`)), 0, 'nothing complete');
  t.equal(p.buffered, 0, 'consume holds nothing back');
});

t.test('the follower reads records as conmon appends them, a record cut mid-write once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-enginelog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'ctr.log');
  writeFileSync(path, '');
  const out: string[] = [];
  const positions: number[] = [];
  const follower = new EngineLogFollower(path, null, {
    onOutput: (s, data) => out.push(`${s}:${data.toString()}`),
    onPosition: (at) => positions.push(at.offset),
  }, 10);
  const first = `${TS} stdout P half`;
  appendFileSync(path, first);
  await new Promise((r) => setTimeout(r, 100));
  t.same(out, [], 'an incomplete record is not delivered');
  appendFileSync(path, ` and rest\n${TS} stderr F two\n`);
  const big = `${TS} stdout F ${'x'.repeat(100_000)}\n`;
  appendFileSync(path, big);
  await new Promise((r) => setTimeout(r, 100));
  await follower.finish();
  t.same(out.join('|'), `stdout:half and rest|stderr:two\n|stdout:${'x'.repeat(100_000)}\n`);
  t.equal(positions[positions.length - 1], statSync(path).size, 'the last position is the end of the file');
});
