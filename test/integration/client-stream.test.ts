// The typed client against a real server: a task's frames iterated with `for await` survive
// WebSockets dropped by the server mid-task (reconnect with ?after=), with nothing lost or repeated.
import t from 'tap';
import { SandboxShiftClient, SandboxShiftError } from '../../src/client/index.js';
import type { StreamFrame } from '../../src/client/index.js';
import { startTestServer } from '../helpers/server.js';

const server = await startTestServer();
t.teardown(() => server.close());
const client = new SandboxShiftClient({ url: server.url });

t.test('the iterator reconnects after the server drops the socket, losing and repeating nothing', async (t) => {
  // Two batches of output, the second only after stdin says go: the drop lands between them,
  // and a stdin frame sent while reconnecting waits for the new connection.
  const command = 'for i in $(seq 1 200); do echo out-$i; echo err-$i >&2; done; read x; echo "got $x"; for i in $(seq 201 400); do echo out-$i; echo err-$i >&2; done';
  const w = await client.createWorkspace({ 'a.txt': 'a' });
  const task = await client.submitTask({ command, workspace: { id: w.id }, stdin: true });
  const stream = client.events(task.id);
  const frames: StreamFrame[] = [];
  let stdout = '';
  let stderr = '';
  let dropped = 0;
  for await (const f of stream) {
    frames.push(f);
    if (f.type === 'stdout') stdout += f.data;
    if (f.type === 'stderr') stderr += f.data;
    if (!dropped && stdout.includes('out-200\n') && stderr.includes('err-200\n')) {
      dropped = server.dropStreams();
      // Stdin is not acknowledged by the protocol: a frame written into the dying connection
      // would be lost, so it goes once the client has reconnected (queued if it is still connecting).
      for (let i = 0; i < 1000 && stream.reconnects === 0 && !stream.connecting; i++) await new Promise((r) => setTimeout(r, 10));
      stream.sendStdin('go\n');
      stream.endStdin();
    } else if (dropped === 1 && stdout.includes('out-300\n')) {
      dropped += server.dropStreams(); // a second drop while output flows
    }
  }
  t.ok(dropped >= 2, 'the server dropped the stream twice');
  t.ok(stream.reconnects >= 2, `the client reconnected (${stream.reconnects})`);
  const seqs = frames.map((f) => f.seq);
  t.same(seqs, seqs.map((_, i) => i + 1), 'every seq once, in order, from 1');
  const expect = (p: string, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `${p}-${from + i}\n`).join('');
  t.equal(stdout, `${expect('out', 1, 200)}got go\n${expect('out', 201, 400)}`, 'stdout complete, nothing twice');
  t.equal(stderr, expect('err', 1, 400), 'stderr complete, nothing twice');
  t.match(frames.at(-1), { type: 'exit', status: 'succeeded', exitCode: 0 });
});

t.test('with a key: the Authorization header and the bearer subprotocol are accepted by the upgrade', async (t) => {
  const keyed = new SandboxShiftClient({ url: server.url, key: 'k-123' });
  const task = await keyed.submitTask({ command: 'echo keyed' });
  let out = '';
  for await (const f of keyed.events(task.id)) if (f.type === 'stdout') out += f.data;
  t.equal(out, 'keyed\n');
});

t.test('errors carry the server code, status and details', async (t) => {
  const err = await client.getTask('tsk_nope').catch((e: unknown) => e);
  t.ok(err instanceof SandboxShiftError);
  t.match(err, { code: 'TASK_NOT_FOUND', status: 404 });
  const refused = await client.submitTask({ command: 'true', timeoutSeconds: 99999999 }).catch((e: unknown) => e);
  t.match(refused, { code: 'LIMIT_ABOVE_MAXIMUM', status: 422 });
  t.ok((refused as SandboxShiftError).details, 'details kept');
  const iterErr = await (async () => {
    for await (const _ of client.events('tsk_nope')) void _;
  })().catch((e: unknown) => e);
  t.match(iterErr, { code: 'TASK_NOT_FOUND', status: 404 }, 'an unknown task ends the iterator with its error');
});

t.test('workspaces from a buffer, read-back of the archive and of a file, delete', async (t) => {
  const { create } = await import('tar');
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'sbx-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'x.txt'), 'from a buffer\n');
  const chunks: Buffer[] = [];
  for await (const c of create({ gzip: true, cwd: dir, portable: true }, ['x.txt'])) chunks.push(c as Buffer);
  const w = await client.createWorkspaceFromArchive(Buffer.concat(chunks), 'application/gzip');
  t.equal(w.files, 1);
  t.equal((await client.readFile(w.id, 'x.txt')).toString(), 'from a buffer\n');
  let bytes = 0;
  for await (const c of await client.downloadArchive(w.id)) bytes += (c as Buffer).length;
  t.ok(bytes > 0, 'the archive streams');
  await client.deleteWorkspace(w.id);
  t.match(await client.getWorkspace(w.id).catch((e: unknown) => e), { code: 'WORKSPACE_NOT_FOUND' });
});
