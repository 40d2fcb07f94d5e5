import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { multipartBody, overlappingZip, reorderedZip, tar, zip } from '../helpers/archives.js';
import { api } from '../helpers/client.js';
import { leftovers, upload, workspaceRecords } from '../helpers/intake.js';
import { startTestServer } from '../helpers/server.js';

/**
 * Intake edge cases on the default path limits: over-long path components, zips whose entries
 * share data, multipart bodies with extra parts, and bodies trickled slower than the body
 * deadline (2 s here). Every refusal carries its code and rule and leaves nothing behind.
 */
const srv = await startTestServer({ requests: { bodyTimeoutSeconds: 2 } });
t.teardown(() => srv.close());

const long = 'n'.repeat(256);

async function nothingLeft(t: Test, before: number) {
  // Cleanup after a refusal may finish just after the response: poll briefly (no timing asserted).
  for (let i = 0; i < 50 && leftovers(srv.dataDir).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.same(leftovers(srv.dataDir), [], 'nothing left in the workspaces or tmp directories');
  t.equal(workspaceRecords(srv.dataDir), before, 'no workspace record');
}

async function refusedUpload(t: Test, body: Buffer, type: string, status: number, code: string, rule: string) {
  const before = workspaceRecords(srv.dataDir);
  const r = await upload(srv.url, body, type);
  t.equal(r.status, status, r.text.slice(0, 300));
  t.equal(r.json?.error?.code, code);
  t.equal(r.json?.error?.details?.rule, rule);
  await nothingLeft(t, before);
  return r.json?.error;
}

t.test('a path component over 255 bytes in a tar is 422 component_too_long', async (t) => {
  const err = await refusedUpload(t, tar([{ name: `dir/${long}`, data: 'x' }]), 'application/x-tar', 422, 'WORKSPACE_PATH_INVALID', 'component_too_long');
  t.match(err.details, { bytes: 256, limit: 255 });
});

t.test('a path component over 255 bytes in a zip is 422 component_too_long', (t) =>
  refusedUpload(t, zip([{ name: long, data: 'x' }]), 'application/zip', 422, 'WORKSPACE_PATH_INVALID', 'component_too_long'));

t.test('a 255-byte component is accepted', async (t) => {
  const r = await upload(srv.url, tar([{ name: 'm'.repeat(255), data: 'x' }]), 'application/x-tar');
  t.equal(r.status, 201, r.text);
  t.equal((await api(srv.url, 'DELETE', `/v1/workspaces/${r.json.id}`)).status, 204);
});

t.test('inline files with an over-long component: POST /v1/workspaces and POST /v1/tasks', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  for (const [path, body] of [
    ['/v1/workspaces', { files: { [`a/${long}`]: 'x' } }],
    ['/v1/tasks', { command: 'true', workspace: { files: { [long]: 'x' } } }],
  ] as const) {
    const r = await api(srv.url, 'POST', path, body);
    t.equal(r.status, 422, `${path}: ${r.text.slice(0, 300)}`);
    t.equal(r.json?.error?.code, 'WORKSPACE_PATH_INVALID');
    t.equal(r.json?.error?.details?.rule, 'component_too_long');
  }
  await nothingLeft(t, before);
});

t.test('a zip whose central directory points many records at one entry is ARCHIVE_CORRUPT', async (t) => {
  // 50 records over one 256 KiB entry of random bytes: 12.5 MiB from a 256 KiB upload, a ratio
  // of about 50, which the ratio bound alone (200) lets through.
  const body = overlappingZip(randomBytes(256 * 1024), 50);
  const err = await refusedUpload(t, body, 'application/zip', 400, 'ARCHIVE_CORRUPT', 'overlapping_entries');
  t.match(err.details, { format: 'zip', index: 1 });
});

t.test('a zip whose records are out of order is ARCHIVE_CORRUPT', (t) =>
  refusedUpload(t, reorderedZip([{ name: 'a', data: 'first' }, { name: 'b', data: 'second' }]), 'application/zip', 400, 'ARCHIVE_CORRUPT', 'overlapping_entries'));

t.test('a well-formed zip of several entries is still accepted', async (t) => {
  const r = await upload(srv.url, zip([{ name: 'a', data: 'one' }, { name: 'd/' }, { name: 'd/b', data: 'two', method: 0 }]), 'application/zip');
  t.equal(r.status, 201, r.text);
  t.equal(r.json.files, 2);
  t.equal((await api(srv.url, 'DELETE', `/v1/workspaces/${r.json.id}`)).status, 204);
});

const MP = { 'content-type': 'multipart/form-data; boundary=sbxboundary' };
const taskPart = (task: unknown) => `--sbxboundary\r\nContent-Disposition: form-data; name="task"\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(task)}\r\n`;
const workspacePart = (archive: Buffer) =>
  `--sbxboundary\r\nContent-Disposition: form-data; name="workspace"; filename="w.tar"\r\nContent-Type: application/x-tar\r\n\r\n${archive.toString('latin1')}\r\n`;

async function tasksCount(): Promise<number> {
  return (await api(srv.url, 'GET', '/v1/tasks?limit=100')).json.tasks.length;
}

t.test('a multipart task with a second workspace part is 400 MULTIPART_INVALID and creates nothing', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  const tasks = await tasksCount();
  const a = tar([{ name: 'a.txt', data: 'one' }]);
  const b = tar([{ name: 'b.txt', data: 'two' }]);
  const body = taskPart({ command: 'cat a.txt' }) + workspacePart(a) + workspacePart(b) + '--sbxboundary--\r\n';
  const r = await api(srv.url, 'POST', '/v1/tasks', Buffer.from(body, 'latin1'), MP);
  t.equal(r.status, 400, r.text);
  t.equal(r.json?.error?.code, 'MULTIPART_INVALID');
  t.equal(r.json?.error?.details?.rule, 'extra_part');
  t.equal(await tasksCount(), tasks, 'no task');
  await nothingLeft(t, before);
});

t.test('a multipart task with a second task part is 400 MULTIPART_INVALID and creates nothing', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  const tasks = await tasksCount();
  const a = tar([{ name: 'a.txt', data: 'one' }]);
  for (const body of [
    taskPart({ command: 'true' }) + taskPart({ command: 'false' }) + workspacePart(a) + '--sbxboundary--\r\n',
    taskPart({ command: 'true' }) + workspacePart(a) + taskPart({ command: 'false' }) + '--sbxboundary--\r\n',
  ]) {
    const r = await api(srv.url, 'POST', '/v1/tasks', Buffer.from(body, 'latin1'), MP);
    t.equal(r.status, 400, r.text);
    t.equal(r.json?.error?.code, 'MULTIPART_INVALID');
  }
  t.equal(await tasksCount(), tasks, 'no task');
  await nothingLeft(t, before);
});

/** Sends a request head and then the body one byte every 500 ms over a raw socket; resolves with what the server answered. */
function trickle(head: string, body: Buffer): Promise<{ status: number; json: any; elapsedMs: number; sent: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const sock = connect(Number(new URL(srv.url).port), '127.0.0.1');
    let sent = 0;
    let answer = '';
    let timer: NodeJS.Timeout | undefined;
    sock.on('connect', () => {
      sock.write(head);
      timer = setInterval(() => {
        if (sent < body.length && !sock.destroyed) sock.write(body.subarray(sent, ++sent));
      }, 500);
    });
    sock.on('data', (d) => (answer += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearInterval(timer);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
      const text = answer.slice(answer.indexOf('\r\n\r\n') + 4);
      let json: any = null;
      try {
        json = JSON.parse(text);
      } catch {
        json = { raw: answer };
      }
      resolve({ status, json, elapsedMs: Date.now() - started, sent });
    });
    setTimeout(() => reject(new Error(`no answer after 30 s: ${answer}`)), 30_000).unref();
  });
}

const requestHead = (path: string, type: string, length: number) =>
  `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${type}\r\nContent-Length: ${length}\r\n\r\n`;

t.test('an archive body trickled past the body deadline is 408 BODY_TIMEOUT and leaves nothing', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  const body = tar([{ name: 'slow.txt', data: 'x'.repeat(2000) }]);
  const r = await trickle(requestHead('/v1/workspaces', 'application/x-tar', body.length), body);
  t.equal(r.status, 408, JSON.stringify(r.json).slice(0, 300));
  t.equal(r.json?.error?.code, 'BODY_TIMEOUT');
  t.match(r.json?.error?.details, { limitSeconds: 2, bound: 'requests.bodyTimeoutSeconds' });
  t.ok(r.sent < body.length, 'the server answered before the body was complete');
  await nothingLeft(t, before);
});

t.test('a zip body trickled past the deadline leaves no spool file', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  const body = zip([{ name: 'a', data: randomBytes(4000) }]);
  const r = await trickle(requestHead('/v1/workspaces', 'application/zip', body.length), body);
  t.equal(r.status, 408);
  t.equal(r.json?.error?.code, 'BODY_TIMEOUT');
  await nothingLeft(t, before);
});

t.test('a multipart task trickled past the deadline is 408 and creates nothing', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  const tasks = await tasksCount();
  const body = Buffer.from(multipartBody({ command: 'true' }, tar([{ name: 'a.txt', data: 'x'.repeat(2000) }])), 'latin1');
  const r = await trickle(requestHead('/v1/tasks', 'multipart/form-data; boundary=sbxboundary', body.length), body);
  t.equal(r.status, 408);
  t.equal(r.json?.error?.code, 'BODY_TIMEOUT');
  t.equal(await tasksCount(), tasks, 'no task');
  await nothingLeft(t, before);
});

t.test('a JSON body trickled past the deadline is 408 and runs nothing', async (t) => {
  const tasks = await tasksCount();
  const body = Buffer.from(JSON.stringify({ command: 'echo never' }));
  const r = await trickle(requestHead('/v1/tasks', 'application/json', body.length), body);
  t.equal(r.status, 408);
  t.equal(r.json?.error?.code, 'BODY_TIMEOUT');
  t.equal(await tasksCount(), tasks, 'no task');
});

t.test('a one-part multipart task is still accepted', async (t) => {
  const r = await api(srv.url, 'POST', '/v1/tasks', Buffer.from(multipartBody({ command: 'true' }, tar([{ name: 'a.txt', data: 'x' }])), 'latin1'), MP);
  t.equal(r.status, 202, r.text);
});

t.test('the server keeps serving after the timeouts', async (t) => {
  const r = await upload(srv.url, tar([{ name: 'after.txt', data: 'ok' }]), 'application/x-tar');
  t.equal(r.status, 201);
});
