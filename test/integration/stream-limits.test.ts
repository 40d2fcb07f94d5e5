import t from 'tap';
import WebSocket from 'ws';
import { api, collectStream, submit, waitDone, type Frame } from '../helpers/client.js';
import { sleep } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ output: { subscriberBacklogBytes: 64 * 1024, frameBytes: 4096 }, requests: { maxStreams: 3 } });
t.teardown(() => srv.close());

t.test('a stalled subscriber never blocks the task or other subscribers; it is closed with 4008 and resumes with ?after=', async (t) => {
  // 16 MiB of frames (8 MiB head + 8 MiB tail): more than loopback's socket buffers can absorb.
  const { id } = await submit(srv.url, { command: "sleep 0.5; head -c 20000000 /dev/zero | tr '\\0' a; echo; echo end" });
  const stalledFrames: Frame[] = [];
  const stalled = new WebSocket(`${srv.wsUrl}/v1/tasks/${id}/stream`);
  const stalledClosed = new Promise<number>((resolve) => stalled.on('close', (code) => resolve(code)));
  stalled.on('message', (d) => stalledFrames.push(JSON.parse(d.toString()) as Frame));
  await new Promise((resolve) => stalled.on('open', resolve));
  (stalled as unknown as { _socket: { pause(): void } })._socket.pause(); // stop reading: the server's send buffer fills

  const normal = await collectStream(srv.wsUrl, id);
  const task = await waitDone(srv.url, id);
  t.equal(task.status, 'succeeded', 'the task finished while a subscriber was stalled');
  t.equal(normal.closeCode, 1000);
  t.equal(normal.frames[normal.frames.length - 1]!.type, 'exit', 'the other subscriber saw everything');
  t.equal(normal.frames.filter((f) => f.type === 'stdout').map((f) => f.data).join('').length, 16 * 1024 * 1024);
  t.equal(normal.frames.filter((f) => f.type === 'gap').length, 1);

  await sleep(3500); // the server gives up on a subscriber that drained nothing for 2 s
  (stalled as unknown as { _socket: { resume(): void } })._socket.resume();
  const code = await stalledClosed;
  t.equal(code, 4008, 'the stalled subscriber was closed with 4008');
  const last = stalledFrames[stalledFrames.length - 1]!.seq;
  t.ok(last < normal.frames.length, `it had fallen behind (at seq ${last} of ${normal.frames.length})`);
  const rest = await collectStream(srv.wsUrl, id, { after: last });
  const joined = [...stalledFrames, ...rest.frames];
  t.same(joined.map((f) => f.seq), normal.frames.map((f) => f.seq), 'reconnecting with ?after= completes the sequence: no gap, no duplicate');
  t.ok(JSON.stringify(joined) === JSON.stringify(normal.frames), 'and the same frames');
});

t.test('live streams are bounded: past the limit a stream is refused with 429 before the upgrade', async (t) => {
  const { id } = await submit(srv.url, { command: 'sleep 20', timeoutSeconds: 30 });
  const open: WebSocket[] = [];
  for (let i = 0; i < 3; i++) {
    const ws = new WebSocket(`${srv.wsUrl}/v1/tasks/${id}/stream`);
    await new Promise((resolve, reject) => {
      ws.on('open', resolve);
      ws.on('error', reject);
    });
    open.push(ws);
  }
  const refused = await new Promise<{ status: number; retryAfter: string | undefined; body: string }>((resolve) => {
    const ws = new WebSocket(`${srv.wsUrl}/v1/tasks/${id}/stream`);
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined, body }));
    });
    ws.on('error', () => undefined);
  });
  t.equal(refused.status, 429);
  t.ok(refused.retryAfter, 'with Retry-After');
  t.equal(JSON.parse(refused.body).error.code, 'TOO_MANY_STREAMS');
  const sse = await api(srv.url, 'GET', `/v1/tasks/${id}/logs?follow=true`, undefined, { accept: 'text/event-stream' });
  t.equal(sse.status, 429, 'followed logs count too');
  open[0]!.close();
  await sleep(300);
  const again = new WebSocket(`${srv.wsUrl}/v1/tasks/${id}/stream`);
  await new Promise((resolve, reject) => {
    again.on('open', resolve);
    again.on('error', reject);
  });
  t.pass('a slot frees when a stream closes');
  for (const ws of [...open, again]) ws.close();
  await api(srv.url, 'POST', `/v1/tasks/${id}/cancel`);
  t.equal((await waitDone(srv.url, id, 15_000)).status, 'cancelled');
});
