import { randomBytes } from 'node:crypto';
import { lstatSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import t, { type Test } from 'tap';
import { tar, tgz, zip, type TarEntry } from '../helpers/archives.js';
import { canary, leftovers, upload, workspaceRecords } from '../helpers/intake.js';
import { startTestServer } from '../helpers/server.js';

/**
 * One hostile archive per test, each built here byte by byte. Every refusal must carry its stable
 * code and rule, leave nothing in the data directory (no workspace directory, no spool file, no
 * record) and nothing outside it (the canary directory the entries aim at stays empty).
 */
const MiB = 1024 * 1024;
const srv = await startTestServer({
  workspaces: {
    maxDepth: 8,
    maxPathBytes: 200,
    archive: { maxCompressedBytes: 4 * MiB, maxExpandedBytes: 1 * MiB, maxEntries: 100, maxCompressionRatio: 5, ratioGraceBytes: 64 * 1024 },
  },
});
t.teardown(() => srv.close());
const bait = canary();
const passwd = { nlink: lstatSync('/etc/passwd').nlink, text: readFileSync('/etc/passwd', 'utf8') };

const TAR = 'application/x-tar';
const ZIP = 'application/zip';

async function refused(
  t: Test,
  body: Buffer,
  type: string,
  expect: { status: number; code: string; rule?: string; details?: Record<string, unknown> },
) {
  const before = workspaceRecords(srv.dataDir);
  const r = await upload(srv.url, body, type);
  t.equal(r.status, expect.status, `status ${expect.status} (${r.text.slice(0, 300)})`);
  t.equal(r.json?.error?.code, expect.code, `code ${expect.code}`);
  if (expect.rule) t.equal(r.json?.error?.details?.rule, expect.rule, `rule ${expect.rule}`);
  if (expect.details) t.match(r.json?.error?.details, expect.details);
  t.same(leftovers(srv.dataDir), [], 'nothing left in the workspaces or tmp directories');
  t.equal(workspaceRecords(srv.dataDir), before, 'no workspace record');
  t.same(bait.entries(), [], 'nothing written outside the staging area (canary untouched)');
  t.equal(lstatSync('/etc/passwd').nlink, passwd.nlink, '/etc/passwd gained no hardlink');
  t.equal(readFileSync('/etc/passwd', 'utf8'), passwd.text, '/etc/passwd unchanged');
  return r.json?.error;
}

const file = (name: string, data = 'x'): TarEntry => ({ name, data });

t.test('absolute path', (t) => refused(t, tar([file(`${bait.dir}/pwned`)]), TAR, { status: 422, code: 'WORKSPACE_PATH_ESCAPE', rule: 'absolute' }));

t.test('.. segments', (t) =>
  refused(t, tar([file('a/../../../../../../..' + bait.dir + '/pwned')]), TAR, { status: 422, code: 'WORKSPACE_PATH_ESCAPE', rule: 'dot_dot' }));

t.test('symlink pointing outside (absolute target)', (t) =>
  refused(t, tar([{ name: 'out', type: '2', linkname: bait.dir }, file('out/pwned')]), TAR, {
    status: 422,
    code: 'WORKSPACE_LINK_ESCAPE',
    rule: 'symlink_absolute',
    details: { entry: 'out' },
  }));

t.test('symlink pointing outside (relative target climbing out)', (t) =>
  refused(t, tar([{ name: 'a/out', type: '2', linkname: '../../x' }]), TAR, { status: 422, code: 'WORKSPACE_LINK_ESCAPE', rule: 'symlink_outside', details: { entry: 'a/out' } }));

t.test('symlink through another link', (t) =>
  refused(t, tar([{ name: 'sub', type: '5' }, { name: 'l1', type: '2', linkname: 'sub' }, { name: 'l2', type: '2', linkname: 'l1/x' }]), TAR, {
    status: 422,
    code: 'WORKSPACE_LINK_ESCAPE',
    rule: 'symlink_through_link',
    details: { entry: 'l2', link: 'l1' },
  }));

t.test('a later link placed on the path an earlier link points along', (t) =>
  refused(t, tar([{ name: 'l', type: '2', linkname: 'd/passwd' }, { name: 'd', type: '2', linkname: 'e' }]), TAR, {
    status: 422,
    code: 'WORKSPACE_LINK_ESCAPE',
    rule: 'symlink_redirects_earlier_link',
    details: { entry: 'd' },
  }));

t.test('intermediate symlink component: d -> /etc, then d/passwd', (t) =>
  refused(t, tar([{ name: 'd', type: '2', linkname: '/etc' }, file('d/passwd', 'root::0:0::/:/bin/sh\n')]), TAR, {
    status: 422,
    code: 'WORKSPACE_LINK_ESCAPE',
    rule: 'symlink_absolute',
  }));

t.test('intermediate symlink component inside the archive: d -> sub, then d/f', (t) =>
  refused(t, tar([{ name: 'sub', type: '5' }, { name: 'd', type: '2', linkname: 'sub' }, file('d/f')]), TAR, {
    status: 422,
    code: 'WORKSPACE_LINK_ESCAPE',
    rule: 'path_through_link',
    details: { entry: 'd/f', link: 'd' },
  }));

t.test('hardlink to a host file (/etc/passwd)', (t) =>
  refused(t, tar([{ name: 'pw', type: '1', linkname: '/etc/passwd' }]), TAR, { status: 422, code: 'WORKSPACE_LINK_ESCAPE', rule: 'hardlink_absolute', details: { entry: 'pw' } }));

t.test('hardlink outside through ..', (t) =>
  refused(t, tar([{ name: 'pw', type: '1', linkname: '../../../../etc/passwd' }]), TAR, { status: 422, code: 'WORKSPACE_LINK_ESCAPE', rule: 'hardlink_outside' }));

t.test('hardlink through an earlier symlink', (t) =>
  refused(t, tar([{ name: 'sub', type: '5' }, file('sub/f'), { name: 'l', type: '2', linkname: 'sub' }, { name: 'h', type: '1', linkname: 'l/f' }]), TAR, {
    status: 422,
    code: 'WORKSPACE_LINK_ESCAPE',
    rule: 'hardlink_through_link',
  }));

t.test('entry written after an earlier symlink of the same name', (t) =>
  refused(t, tar([{ name: 'sub', type: '5' }, { name: 'x', type: '2', linkname: 'sub/y' }, file('x', 'overwrite through the link')]), TAR, {
    status: 422,
    code: 'WORKSPACE_ENTRY_CONFLICT',
    rule: 'overwrite_link',
    details: { entry: 'x' },
  }));

t.test('the same file twice', (t) =>
  refused(t, tar([file('a', '1'), file('a', '2')]), TAR, { status: 422, code: 'WORKSPACE_ENTRY_CONFLICT', rule: 'duplicate_entry' }));

t.test('character device', (t) =>
  refused(t, tar([{ name: 'null', type: '3' }]), TAR, { status: 422, code: 'WORKSPACE_SPECIAL_FILE', rule: 'character_device', details: { entry: 'null' } }));

t.test('block device', (t) =>
  refused(t, tar([{ name: 'sda', type: '4' }]), TAR, { status: 422, code: 'WORKSPACE_SPECIAL_FILE', rule: 'block_device' }));

t.test('FIFO', (t) => refused(t, tar([{ name: 'pipe', type: '6' }]), TAR, { status: 422, code: 'WORKSPACE_SPECIAL_FILE', rule: 'fifo' }));

t.test('socket (zip carries Unix mode bits; tar has no socket type)', (t) =>
  refused(t, zip([{ name: 'sock', mode: 0o140755 }]), ZIP, { status: 422, code: 'WORKSPACE_SPECIAL_FILE', rule: 'socket', details: { entry: 'sock' } }));

t.test('character device in a zip', (t) =>
  refused(t, zip([{ name: 'null', mode: 0o20666 }]), ZIP, { status: 422, code: 'WORKSPACE_SPECIAL_FILE', rule: 'character_device' }));

t.test('symlink out of a zip', (t) =>
  refused(t, zip([{ name: 'etc', mode: 0o120777, data: '/etc' }, { name: 'etc/passwd', data: 'x' }]), ZIP, {
    status: 422,
    code: 'WORKSPACE_LINK_ESCAPE',
    rule: 'symlink_absolute',
  }));

t.test('.. in a zip entry name', (t) => refused(t, zip([{ name: '../../x', data: 'x' }]), ZIP, { status: 422, code: 'WORKSPACE_PATH_ESCAPE', rule: 'dot_dot' }));

t.test('NUL in a name (pax path)', (t) =>
  refused(t, tar([file('safe\0/../../etc/passwd')]), TAR, { status: 422, code: 'WORKSPACE_PATH_INVALID', rule: 'nul_byte' }));

t.test('NUL in a zip name', (t) => refused(t, zip([{ name: 'a\0b', data: 'x' }]), ZIP, { status: 422, code: 'WORKSPACE_PATH_INVALID', rule: 'nul_byte' }));

t.test('name too long', (t) =>
  refused(t, tar([file('n'.repeat(201))]), TAR, { status: 422, code: 'WORKSPACE_PATH_INVALID', rule: 'too_long', details: { limit: 200 } }));

t.test('too deep', async (t) => {
  const err = await refused(t, tar([file('a/b/c/d/e/f/g/h/i')]), TAR, { status: 413, code: 'WORKSPACE_PATH_TOO_DEEP', details: { depth: 9, limit: 8 } });
  t.ok(err);
});

t.test('too many entries', (t) =>
  refused(t, tar(Array.from({ length: 101 }, (_, i) => file(`f${i}`))), TAR, {
    status: 413,
    code: 'ARCHIVE_TOO_MANY_ENTRIES',
    details: { limit: 100, bound: 'workspaces.archive.maxEntries', entry: 'f100' },
  }));

t.test('too many bytes expanded (plain tar, real bytes counted)', (t) =>
  refused(t, tar([file('big', randomBytes(1.5 * MiB).toString('latin1'))]), TAR, {
    status: 413,
    code: 'ARCHIVE_EXPANDED_TOO_LARGE',
    details: { limit: MiB, bound: 'workspaces.archive.maxExpandedBytes', entry: 'big' },
  }));

t.test('gzip bomb (compression ratio)', (t) =>
  refused(t, tgz([file('zeros', Buffer.alloc(64 * MiB).toString('latin1'))]), 'application/gzip', {
    status: 413,
    code: 'ARCHIVE_COMPRESSION_RATIO',
    details: { limit: 5, bound: 'workspaces.archive.maxCompressionRatio' },
  }));

t.test('zip whose entries claim small sizes but expand past the limit', async (t) => {
  // Hex text compresses about 2:1, under the ratio limit (5 here): the expanded limit is what stops it.
  const body = zip([
    { name: 'a.txt', data: randomBytes(400 * 1024).toString('hex'), claimedSize: 10 },
    { name: 'b.txt', data: randomBytes(400 * 1024).toString('hex'), claimedSize: 10 },
  ]);
  t.ok(body.length < 4 * MiB);
  await refused(t, body, ZIP, { status: 413, code: 'ARCHIVE_EXPANDED_TOO_LARGE', details: { limit: MiB, bound: 'workspaces.archive.maxExpandedBytes' } });
});

t.test('zip bomb (one entry of zeros claiming a tiny size)', (t) =>
  refused(t, zip([{ name: 'z', data: Buffer.alloc(32 * MiB), claimedSize: 1 }]), ZIP, { status: 413, code: 'ARCHIVE_COMPRESSION_RATIO' }));

t.test('compressed body over the limit (declared length)', (t) =>
  refused(t, tar([file('big', randomBytes(5 * MiB).toString('latin1'))]), TAR, {
    status: 413,
    code: 'ARCHIVE_TOO_LARGE',
    details: { limit: 4 * MiB, bound: 'workspaces.archive.maxCompressedBytes' },
  }));

t.test('compressed body over the limit (chunked, no declared length)', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  // A zip is spooled to disk before it is read: the count of body bytes is what stops it.
  const chunk = randomBytes(256 * 1024);
  chunk.write('PK\x03\x04', 0, 'latin1');
  let sent = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (sent > 8 * MiB) return c.close();
      sent += chunk.length;
      c.enqueue(sent === chunk.length ? chunk : randomBytes(chunk.length));
    },
  });
  const res = await fetch(`${srv.url}/v1/workspaces`, { method: 'POST', headers: { 'content-type': 'application/zip' }, body: stream, duplex: 'half' } as RequestInit);
  const json = (await res.json()) as any;
  t.equal(res.status, 413);
  t.equal(json.error.code, 'ARCHIVE_TOO_LARGE');
  t.same(leftovers(srv.dataDir), []);
  t.equal(workspaceRecords(srv.dataDir), before);
});

t.test('a client that disconnects mid-upload leaves nothing behind', async (t) => {
  const before = workspaceRecords(srv.dataDir);
  const head = tar([file('a', 'x'), { name: 'big', data: randomBytes(3 * MiB).toString('latin1') }], { end: false }).subarray(0, 2 * MiB);
  const { request } = await import('node:http');
  const req = request(`${srv.url}/v1/workspaces`, { method: 'POST', headers: { 'content-type': 'application/x-tar', 'content-length': 3.5 * MiB } });
  req.on('error', () => undefined);
  req.write(head);
  await new Promise((r) => setTimeout(r, 300));
  req.destroy();
  // The server notices the reset and cleans up; poll briefly for it (no timing is asserted).
  for (let i = 0; i < 50 && leftovers(srv.dataDir).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.same(leftovers(srv.dataDir), [], 'the half-written workspace was removed');
  t.equal(workspaceRecords(srv.dataDir), before);
  const ok = await upload(srv.url, tar([file('after', 'still serving')]), TAR);
  t.equal(ok.status, 201, 'the server keeps serving');
  const { rmSync } = await import('node:fs');
  rmSync(join(srv.dataDir, 'workspaces', ok.json.id), { recursive: true, force: true });
});

t.test('truncated tar', (t) => {
  const whole = tar([file('a', 'x'.repeat(4000))]);
  return refused(t, whole.subarray(0, 1500), TAR, { status: 400, code: 'ARCHIVE_CORRUPT' });
});

t.test('truncated tar.gz', (t) => {
  const whole = tgz([file('a', randomBytes(20000).toString('hex'))]);
  return refused(t, whole.subarray(0, whole.length / 2), 'application/gzip', { status: 400, code: 'ARCHIVE_CORRUPT' });
});

t.test('corrupt zip', (t) => {
  const good = zip([{ name: 'a', data: 'hello world'.repeat(100) }]);
  const bad = Buffer.from(good);
  bad.fill(0xff, 40, good.length - 30);
  return refused(t, bad, ZIP, { status: 400, code: 'ARCHIVE_CORRUPT' });
});

t.test('wrong media type: text/plain', (t) => refused(t, tar([file('a')]), 'text/plain', { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' }));

t.test('wrong media type: a tar labelled as zip', (t) =>
  refused(t, tar([file('a')]), ZIP, { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', rule: 'content_does_not_match_content_type', details: { sniffed: 'tar' } }));

t.test('wrong media type: bytes that are no archive', (t) =>
  refused(t, randomBytes(4096), 'application/octet-stream', { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', rule: 'content_is_not_tar_gzip_or_zip' }));

t.test('gzip whose content is not a tar', (t) =>
  refused(t, gzipSync(randomBytes(4096)), 'application/gzip', { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', rule: 'gzip_content_is_not_tar' }));

t.test('the refusals above created nothing', async (t) => {
  t.equal(workspaceRecords(srv.dataDir), 1, 'only the one upload that was meant to succeed');
  t.same(leftovers(srv.dataDir), []);
  t.same(bait.entries(), []);
  t.ok(join(bait.dir));
});
