import t from 'tap';
import WebSocket from 'ws';
import { api, collectStream, submit, waitDone, type Frame } from '../helpers/client.js';
import { BOTH_ISOLATIONS, ISOLATIONS, type TestIsolation } from '../helpers/isolation.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({ ...BOTH_ISOLATIONS, output: { headBytes: 4096, tailBytes: 2048, frameBytes: 1024 } });
t.teardown(() => srv.close());

// Stdin, live streaming with reconnects and the output caps, under each isolation.
function streams(t: Tap.Test, isolation: TestIsolation) {
  t.test('stdin: the task receives exactly what a WebSocket client sent, then EOF', async (t) => {
    const { id } = await submit(srv.url, { isolation, command: 'od -An -c; echo eof-seen', stdin: true });
    const chunks = ['hello ', 'wörld\n', 'tab\there\n', 'x'.repeat(5000), '\n'];
    const { frames } = await collectStream(srv.wsUrl, id, {
      onOpen: (ws) => {
        for (const data of chunks) ws.send(JSON.stringify({ type: 'stdin', data }));
        ws.send(JSON.stringify({ type: 'stdin', eof: true }));
      },
    });
    t.match(frames[frames.length - 1], { type: 'exit', status: 'succeeded', exitCode: 0 });
    // Compare byte-exactly by having the task echo a checksum-free copy instead of od's rendering.
    const copy = await submit(srv.url, { isolation, command: 'cat > /workspace/in.bin; wc -c < /workspace/in.bin; sha256sum < /workspace/in.bin', stdin: true });
    const got = await collectStream(srv.wsUrl, copy.id, {
      onOpen: (ws) => {
        for (const data of chunks) ws.send(JSON.stringify({ type: 'stdin', data }));
        ws.send(JSON.stringify({ type: 'stdin', eof: true }));
      },
    });
    const expected = Buffer.from(chunks.join(''));
    const { createHash } = await import('node:crypto');
    const out = got.frames.filter((f) => f.type === 'stdout').map((f) => f.data).join('');
    t.equal(out, `${expected.length}\n${createHash('sha256').update(expected).digest('hex')}  -\n`, 'byte-exact stdin, then EOF');
    t.match((await waitDone(srv.url, copy.id)), { status: 'succeeded' });
  });

  // Server-side frame handling and fan-out: the same whatever runs the task, checked once.
  if (isolation === 'runc') t.test('stdin frames to a task without stdin get an error frame, not a crash', async (t) => {
    const { id } = await submit(srv.url, { isolation, command: 'sleep 1; echo done' });
    const errors: Frame[] = [];
    const { frames } = await collectStream(srv.wsUrl, id, {
      onOpen: (ws) => {
        ws.send(JSON.stringify({ type: 'stdin', data: 'x' }));
        ws.send('not json');
        ws.send(JSON.stringify({ type: 'bogus' }));
      },
      onFrame: (f) => {
        if (f.type === 'error') errors.push(f);
      },
    });
    t.same(errors.map((e) => e.code), ['STDIN_NOT_ENABLED', 'MALFORMED_JSON', 'VALIDATION_FAILED']);
    t.ok(errors.every((e) => e.seq === undefined), 'error frames are out of band (no seq)');
    t.match(frames[frames.length - 1], { type: 'exit', status: 'succeeded' });
  });

  t.test('reconnecting with ?after=N yields exactly the frames after N', async (t) => {
    // Pauses between writes so that the output arrives as many separate frames.
    const { id } = await submit(srv.url, { isolation, command: 'for i in $(seq 1 20); do echo "line $i"; echo "err $i" >&2; sleep 0.05; done' });
    const all = (await collectStream(srv.wsUrl, id)).frames;
    t.ok(all.length >= 10, `enough frames to replay from several points (${all.length})`);
    for (const n of [0, 1, 2, 5, all.length - 1, all.length]) {
      const { frames } = await collectStream(srv.wsUrl, id, { after: n });
      t.same(frames, all.slice(n), `after=${n}: exact suffix, no gap, no duplicate`);
    }

    // A live reconnect: drop the socket mid-task, reconnect with the last seq seen.
    const live = await submit(srv.url, { isolation, command: 'for i in $(seq 1 20); do echo "tick $i"; sleep 0.05; done' });
    const first: Frame[] = [];
    await new Promise<void>((resolve) => {
      const ws = new WebSocket(`${srv.wsUrl}/v1/tasks/${live.id}/stream`);
      ws.on('message', (d) => {
        first.push(JSON.parse(d.toString()) as Frame);
        if (first.length === 6) ws.terminate();
      });
      ws.on('close', () => resolve());
    });
    const last = first[first.length - 1]!.seq;
    const rest = (await collectStream(srv.wsUrl, live.id, { after: last })).frames;
    const joined = [...first, ...rest];
    t.same(joined.map((f) => f.seq), joined.map((_, i) => i + 1), 'joined sequence has no gaps or duplicates');
    t.same(joined, (await collectStream(srv.wsUrl, live.id)).frames);
  });

  if (isolation === 'runc') t.test('any number of subscribers each see the whole sequence', async (t) => {
    const { id } = await submit(srv.url, { isolation, command: 'sleep 0.5; for i in $(seq 1 50); do echo "n $i"; done' });
    const results = await Promise.all(Array.from({ length: 8 }, () => collectStream(srv.wsUrl, id)));
    const reference = results[0]!.frames;
    t.equal(reference[reference.length - 1]!.type, 'exit');
    for (const r of results) t.same(r.frames, reference);
  });

  t.test('output beyond the cap keeps head and tail with one gap frame; replay shows the same', async (t) => {
    // 20000 bytes of numbered lines on stdout; small lines on stderr stay under the cap.
    const { id } = await submit(srv.url, { isolation, command: 'seq -w 1 4000 | sed "s/^/L/"; echo small >&2' });
    const live = (await collectStream(srv.wsUrl, id)).frames;
    const task = await waitDone(srv.url, id);
    const produced = Buffer.from(Array.from({ length: 4000 }, (_, i) => `L${String(i + 1).padStart(4, '0')}\n`).join(''));
    t.equal(task.output.stdoutBytes, produced.length);
    t.equal(task.output.truncated, true);
    const gaps = live.filter((f) => f.type === 'gap');
    t.same(gaps, [{ type: 'gap', stream: 'stdout', droppedBytes: produced.length - 4096 - 2048, seq: gaps[0]?.seq }], 'one gap frame for stdout');
    const gapAt = live.indexOf(gaps[0]!);
    const head = live.slice(0, gapAt).filter((f) => f.type === 'stdout').map((f) => f.data).join('');
    const tail = live.slice(gapAt).filter((f) => f.type === 'stdout').map((f) => f.data).join('');
    t.equal(head, produced.subarray(0, 4096).toString(), 'head: the first headBytes');
    t.equal(tail, produced.subarray(produced.length - 2048).toString(), 'tail: the last tailBytes, after the gap');
    t.equal(live[live.length - 1]!.type, 'exit');
    t.ok(live.slice(gapAt).every((f) => f.type !== 'stderr' || f.seq < gaps[0]!.seq), 'nothing else interleaves the tail');
    t.ok(live.every((f) => f.type !== 'stdout' || Buffer.byteLength(f.data as string) <= 1024 + 3), 'frames respect frameBytes');
    t.same((await collectStream(srv.wsUrl, id)).frames, live, 'replay shows the same sequence');
    const raw = Buffer.from(await (await fetch(`${srv.url}/v1/tasks/${id}/logs?stream=stdout`)).arrayBuffer());
    t.same(raw, Buffer.concat([produced.subarray(0, 4096), produced.subarray(produced.length - 2048)]), 'raw bytes are head + tail as kept');
    const text = (await api(srv.url, 'GET', `/v1/tasks/${id}/logs`)).text;
    t.ok(text.includes('small\n'));
  });
}

for (const isolation of ISOLATIONS) t.test(isolation, async (t) => streams(t, isolation));
