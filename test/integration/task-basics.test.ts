import t from 'tap';
import { api, collectStream, submit, waitDone, type Frame } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());

const outputOf = (frames: Frame[], type: string) =>
  frames.filter((f) => f.type === type).map((f) => f.data as string).join('');

t.test('a task printing to both streams and exiting 3 reads failed, exitCode 3, streams in order', async (t) => {
  const cmd = 'echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; sleep 0.2; echo err2 >&2; exit 3';
  const { id } = await submit(srv.url, { command: cmd });
  const { frames, closeCode } = await collectStream(srv.wsUrl, id);
  t.equal(closeCode, 1000, 'the server closes the stream with 1000 after exit');
  t.same(frames.map((f) => f.seq), frames.map((_, i) => i + 1), 'seq starts at 1 and increases by one');
  t.same(frames.slice(0, 2).map((f) => f.status), ['queued', 'running']);
  const output = frames.filter((f) => f.type === 'stdout' || f.type === 'stderr').map((f) => [f.type, f.data]);
  t.same(output, [['stdout', 'out1\n'], ['stderr', 'err1\n'], ['stdout', 'out2\n'], ['stderr', 'err2\n']]);
  const exit = frames[frames.length - 1]!;
  t.match(exit, { type: 'exit', status: 'failed', exitCode: 3, reason: null });
  t.type(exit.durationMs, 'number');

  const task = await waitDone(srv.url, id);
  t.match(task, { status: 'failed', exitCode: 3, reason: null, error: null, command: cmd, output: { stdoutBytes: 10, stderrBytes: 10, truncated: false } });
  t.ok(task.startedAt && task.finishedAt && task.durationMs >= 0);

  const text = await api(srv.url, 'GET', `/v1/tasks/${id}/logs`);
  t.equal(text.status, 200);
  t.match(text.headers.get('content-type'), /^text\/plain/);
  t.equal(text.text, 'out1\nerr1\nout2\nerr2\n', 'text logs interleave both streams as they happened');

  const nd = await api(srv.url, 'GET', `/v1/tasks/${id}/logs`, undefined, { accept: 'application/x-ndjson' });
  t.match(nd.headers.get('content-type'), /application\/x-ndjson/);
  t.same(nd.text.trim().split('\n').map((l) => JSON.parse(l)), frames, 'NDJSON logs are the same frames');

  const out = await api(srv.url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`);
  t.equal(out.text, 'out1\nout2\n');
  const err = await api(srv.url, 'GET', `/v1/tasks/${id}/logs?stream=stderr`);
  t.equal(err.text, 'err1\nerr2\n');

  const late = await collectStream(srv.wsUrl, id);
  t.same(late.frames, frames, 'a late subscriber gets every frame from the log on disk');
});

t.test('a task that exits 0 succeeds; the task list is newest first with a cursor', async (t) => {
  const a = await submit(srv.url, { command: 'true' });
  const b = await submit(srv.url, { command: 'printf "%s" "$GREETING"', env: { GREETING: 'héllo wörld' } });
  const ta = await waitDone(srv.url, a.id);
  const tb = await waitDone(srv.url, b.id);
  t.match(ta, { status: 'succeeded', exitCode: 0, reason: null });
  t.match(tb, { status: 'succeeded', exitCode: 0, envKeys: ['GREETING'] });
  t.notOk('env' in tb, 'env values are never served back');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${b.id}/logs`)).text, 'héllo wörld');

  const page1 = await api(srv.url, 'GET', '/v1/tasks?limit=1');
  t.equal(page1.json.tasks.length, 1);
  t.equal(page1.json.tasks[0].id, b.id, 'newest first');
  t.type(page1.json.nextCursor, 'string');
  const page2 = await api(srv.url, 'GET', `/v1/tasks?limit=1&cursor=${page1.json.nextCursor}`);
  t.equal(page2.json.tasks[0].id, a.id);
  const succeeded = await api(srv.url, 'GET', '/v1/tasks?status=succeeded&limit=100');
  t.ok(succeeded.json.tasks.every((x: { status: string }) => x.status === 'succeeded'));
  t.ok(succeeded.json.tasks.some((x: { id: string }) => x.id === a.id));
});

t.test('SSE follow streams the same frames and resumes with Last-Event-ID', async (t) => {
  const { id } = await submit(srv.url, { command: 'for i in 1 2 3; do echo line$i; sleep 0.2; done' });
  const res = await fetch(`${srv.url}/v1/tasks/${id}/logs?follow=true`, { headers: { accept: 'text/event-stream' } });
  t.match(res.headers.get('content-type'), /text\/event-stream/);
  const body = await res.text();
  const events = body.trim().split('\n\n').map((block) => {
    const lines = Object.fromEntries(block.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
    return { event: lines.event, id: Number(lines.id), frame: JSON.parse(lines.data!) as Frame };
  });
  t.same(events.map((e) => e.id), events.map((_, i) => i + 1));
  t.ok(events.every((e) => e.event === e.frame.type && e.id === e.frame.seq));
  t.equal(events[events.length - 1]!.event, 'exit', 'follow ends after the exit frame');
  t.equal(events.filter((e) => e.event === 'stdout').map((e) => e.frame.data).join(''), 'line1\nline2\nline3\n');
  const resumed = await fetch(`${srv.url}/v1/tasks/${id}/logs?follow=true`, { headers: { accept: 'text/event-stream', 'last-event-id': '3' } });
  const ids = (await resumed.text()).match(/^id: \d+$/gm)!.map((l) => Number(l.slice(4)));
  t.same(ids, events.slice(3).map((e) => e.id), 'Last-Event-ID resumes just after that seq');
});

t.test('UTF-8 split across writes is never broken in frames; invalid bytes become U+FFFD', async (t) => {
  // "é" is c3 a9: written as two separate writes with a pause between them.
  const { id } = await submit(srv.url, { command: "printf '\\303'; sleep 0.3; printf '\\251\\n'; printf '\\377\\n'" });
  const { frames } = await collectStream(srv.wsUrl, id);
  t.equal(outputOf(frames, 'stdout'), 'é\n\uFFFD\n');
  const raw = await fetch(`${srv.url}/v1/tasks/${id}/logs?stream=stdout`);
  t.same([...Buffer.from(await raw.arrayBuffer())], [0xc3, 0xa9, 0x0a, 0xff, 0x0a], 'exact bytes are kept per stream');
});
