/**
 * The audit log and the metrics of a real server on real Podman, with API keys: a mixed workload
 * (tasks, a workspace, egress decisions, a 401), GET /v1/audit, GET /metrics, appends from
 * another process while the server writes, and `sandboxshift audit verify` run as a process on
 * the chain, untouched, rotated, and with one record edited, removed or moved.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { chainFiles } from '../../src/audit/files.js';
import { AuditLog } from '../../src/audit/log.js';
import { hashKey } from '../../src/auth/keys.js';
import { installDir } from '../../src/paths.js';
import { runCli } from '../helpers/cli.js';
import { api } from '../helpers/client.js';
import { httpUpstream, PROBE_PY } from '../helpers/egress.js';
import { parsePrometheus } from '../helpers/prometheus.js';
import { keptDataDir, startTestServer } from '../helpers/server.js';

const ADMIN = `ssk_${'a'.repeat(40)}`;
const USER = `ssk_${'u'.repeat(40)}`;
const SECRET = 'value-that-must-never-be-audited-7f3a';
const dataDir = keptDataDir(t, 'sbx-audit-');
const auditFile = join(dataDir, 'audit.jsonl');
const configFile = join(dataDir, 'verify-config.json');
writeFileSync(configFile, JSON.stringify({ dataDir }));

const web = await httpUpstream();
const srv = await startTestServer({
  dataDir,
  auth: {
    keys: [
      { id: 'k-admin', tenant: 'ops', role: 'admin', sha256: hashKey(ADMIN) },
      { id: 'k-user', tenant: 'acme', role: 'user', sha256: hashKey(USER) },
    ],
  },
  egress: { testHosts: { 'ok.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [web.port] },
});
let open = true;
t.teardown(async () => {
  if (open) await srv.close();
  await web.close();
});

const as = (key: string) => ({ authorization: `Bearer ${key}` });
const call = (method: string, path: string, key: string | null, body?: unknown) => api(srv.url, method, path, body, key ? as(key) : {});
const scrape = async () => {
  const r = await call('GET', '/metrics', ADMIN);
  t.equal(r.status, 200, 'GET /metrics with an admin key');
  t.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(r.text);
};
const records = () => readFileSync(auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

// The built CLI and audit writer (as `sandboxshift` runs them), not through the test loader.
const dist = join(installDir(), 'dist', 'src');
if (!existsSync(join(dist, 'cli.js'))) throw new Error(`${dist}/cli.js is missing: run npm run build first`);

const cli = (args: string[]) => runCli(args);
const verify = () => cli(['audit', 'verify', '--config', configFile]);

let taskId = '';

t.test('a task moves the counters; its records name it, with env names only', async (t) => {
  const before = await scrape();
  const sub = await call('POST', '/v1/tasks', ADMIN, { command: 'echo out; echo err >&2', env: { API_TOKEN: SECRET } });
  t.equal(sub.status, 202);
  taskId = sub.json.id;
  const done = await finished(taskId);
  t.equal(done.status, 'succeeded');
  const after = await scrape();
  const moved = (name: string, labels?: Record<string, string>) => (after.value(name, labels) ?? NaN) - (before.value(name, labels) ?? NaN);
  t.equal(moved('sandboxshift_tasks_total', { status: 'queued' }), 1, 'submitted');
  t.equal(moved('sandboxshift_tasks_total', { status: 'running' }), 1, 'started');
  t.equal(moved('sandboxshift_tasks_total', { status: 'succeeded' }), 1, 'succeeded');
  t.equal(moved('sandboxshift_task_start_seconds_count'), 1);
  t.equal(moved('sandboxshift_task_duration_seconds_count'), 1);
  t.ok(moved('sandboxshift_task_duration_seconds_sum') > 0, 'a duration was observed');
  t.equal(moved('sandboxshift_stream_bytes_total', { stream: 'stdout' }), 4, '"out\\n"');
  t.equal(moved('sandboxshift_stream_bytes_total', { stream: 'stderr' }), 4, '"err\\n"');
  t.equal(after.value('sandboxshift_queue_depth'), 0);
  t.equal(after.value('sandboxshift_subscribers'), 0);

  const page = await call('GET', `/v1/audit?task=${taskId}`, ADMIN);
  t.equal(page.status, 200);
  const byEvent = Object.fromEntries(page.json.records.map((r: any) => [r.event, r]));
  t.same(page.json.records.map((r: any) => r.event), ['task.submitted', 'task.started', 'task.finished']);
  t.match(byEvent['task.submitted'], {
    taskId,
    tenant: done.tenant,
    keyId: done.keyId,
    command: 'echo out; echo err >&2',
    image: done.image.name,
    limits: { ...done.resources, timeoutSeconds: done.timeoutSeconds },
    allowlist: [],
    envNames: ['API_TOKEN'],
  });
  t.match(byEvent['task.finished'], { status: 'succeeded', exitCode: 0, durationMs: done.durationMs });
  t.notOk(readFileSync(auditFile, 'utf8').includes(SECRET), 'the environment value is nowhere in the audit file');
});

/** Polls the task with the admin key until it is terminal. */
async function finished(id: string) {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = await call('GET', `/v1/tasks/${id}`, ADMIN);
    if (!['queued', 'running'].includes(r.json.status)) return r.json;
    if (Date.now() > deadline) throw new Error(`task ${id} did not finish`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

t.test('a workspace, egress decisions and a 401 are recorded; metrics count them', async (t) => {
  const before = await scrape();
  const ws = await call('POST', '/v1/workspaces', ADMIN, { files: { 'a.txt': 'a\n' } });
  t.equal(ws.status, 201);
  t.equal((await call('DELETE', `/v1/workspaces/${ws.json.id}`, ADMIN)).status, 204);

  const egress = await call('POST', '/v1/tasks', ADMIN, {
    command: `python3 probe.py http http://ok.test:${web.port}/fine; python3 probe.py http http://denied.test:${web.port}/no`,
    workspace: { files: { 'probe.py': PROBE_PY } },
    network: { allow: ['ok.test'] },
  });
  t.equal(egress.status, 202, egress.text);
  t.equal((await finished(egress.json.id)).status, 'succeeded');
  const logs = await call('GET', `/v1/tasks/${egress.json.id}/logs?stream=stdout`, ADMIN);
  t.match(logs.text, /^ok 200 hello \/fine\nhttp 403 denied; reason=not_allowlisted/);

  const denied = await api(srv.url, 'GET', '/v1/tasks?limit=1&secret=in-the-query', undefined, { 'x-forwarded-for': '203.0.113.9' });
  t.equal(denied.status, 401);
  const bad = await api(srv.url, 'GET', '/v1/tasks', undefined, as(`ssk_${'x'.repeat(40)}`));
  t.equal(bad.status, 401);

  const after = await scrape();
  t.equal((after.value('sandboxshift_egress_decisions_total', { allowed: 'true' }) ?? 0) - (before.value('sandboxshift_egress_decisions_total', { allowed: 'true' }) ?? 0), 1);
  t.equal((after.value('sandboxshift_egress_decisions_total', { allowed: 'false' }) ?? 0) - (before.value('sandboxshift_egress_decisions_total', { allowed: 'false' }) ?? 0), 1);
  t.equal((after.value('sandboxshift_auth_failures_total') ?? 0) - (before.value('sandboxshift_auth_failures_total') ?? 0), 2);

  const wsRecords = (await call('GET', `/v1/audit?event=workspace.created`, ADMIN)).json.records;
  t.ok(wsRecords.some((r: any) => r.workspaceId === ws.json.id && r.tenant === ws.json.tenant), 'workspace.created');
  const deleted = (await call('GET', `/v1/audit?event=workspace.deleted`, ADMIN)).json.records;
  t.match(deleted, [{ workspaceId: ws.json.id, cause: 'request' }]);
  const decisions = (await call('GET', `/v1/audit?event=egress.decision&task=${egress.json.id}`, ADMIN)).json.records;
  t.match(decisions, [
    { host: 'ok.test', port: web.port, allowed: true, reason: 'allowlisted', address: '127.0.0.1' },
    { host: 'denied.test', port: web.port, allowed: false, reason: 'not_allowlisted' },
  ]);
  const failures = (await call('GET', `/v1/audit?event=auth.failed`, ADMIN)).json.records;
  t.match(failures.slice(-2), [
    { tenant: null, keyId: null, clientAddress: '127.0.0.1', method: 'GET', path: '/v1/tasks' },
    { clientAddress: '127.0.0.1', path: '/v1/tasks' },
  ]);
  t.notOk(JSON.stringify(failures).includes('in-the-query'), 'the query string is not recorded');
  t.notOk(readFileSync(auditFile, 'utf8').includes('x'.repeat(40)), 'nor the key that was tried');
});

t.test('GET /v1/audit: admin only, filters, cursor, bounds', async (t) => {
  const user = await call('GET', '/v1/audit', USER);
  t.equal(user.status, 403);
  t.equal(user.json.error.code, 'ADMIN_REQUIRED');
  t.equal((await call('GET', '/metrics', USER)).json.error.code, 'ADMIN_REQUIRED', '/metrics too');
  t.equal((await call('GET', '/metrics', null)).status, 401, '/metrics needs a key on a server with keys');
  t.equal((await call('GET', '/v1/audit', null)).status, 401);

  // Paging by two from the start walks the whole chain in order.
  const all = records();
  const seen: number[] = [];
  let cursor: string | null = null;
  do {
    const r: any = await call('GET', `/v1/audit?limit=2${cursor ? `&cursor=${cursor}` : ''}`, ADMIN);
    t.equal(r.status, 200);
    seen.push(...r.json.records.map((x: any) => x.seq));
    cursor = r.json.nextCursor;
  } while (cursor && seen.length <= all.length);
  t.ok(seen.length >= all.length, 'every record (and those written while paging)');
  t.same(seen, seen.map((_, i) => i + 1), 'seq 1, 2, 3, ... without gaps or repeats');

  const first = all[0];
  t.equal(first.event, 'config.loaded');
  t.match(first, { serverId: /^srv_/, configSha256: /^[0-9a-f]{64}$/, apiKeys: [{ id: 'k-admin' }, { id: 'k-user' }] });
  t.notOk(JSON.stringify(first).includes(hashKey(ADMIN)), 'no key hash in the start-up record');

  const mid = all[Math.floor(all.length / 2)];
  const since = await call('GET', `/v1/audit?since=${encodeURIComponent(mid.time)}&limit=100`, ADMIN);
  t.ok(since.json.records.every((r: any) => r.time >= mid.time) && since.json.records.some((r: any) => r.seq === mid.seq), 'since is inclusive');
  const until = await call('GET', `/v1/audit?until=${encodeURIComponent(mid.time)}&limit=100`, ADMIN);
  t.ok(until.json.records.every((r: any) => r.time < mid.time), 'until is exclusive');
  t.ok(until.json.records.length > 0);
  const tenant = await call('GET', `/v1/audit?tenant=nobody&limit=5`, ADMIN);
  t.same(tenant.json, { records: [], nextCursor: null });

  for (const [q, code] of [
    ['limit=1001', 'LIMIT_ABOVE_MAXIMUM'],
    ['cursor=nonsense', 'VALIDATION_FAILED'],
    ['since=yesterday', 'VALIDATION_FAILED'],
    ['event=DROP%20TABLE', 'VALIDATION_FAILED'],
    ['colour=red', 'VALIDATION_FAILED'],
  ] as const) {
    const r = await call('GET', `/v1/audit?${q}`, ADMIN);
    t.equal(r.json?.error?.code, code, `${q}: ${code}`);
  }
});

t.test('another process appends while the server writes: one chain', async (t) => {
  const script = `import { AuditLog } from ${JSON.stringify(pathToFileURL(join(dist, 'audit', 'log.js')).href)};
const log = new AuditLog(${JSON.stringify(auditFile)}, 64 * 1024 * 1024);
for (let i = 0; i < 200; i++) log.append({ event: 'test.append', tenant: null, keyId: null, i });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  // Meanwhile the server records 401s as fast as they come.
  let served = 0;
  while ((await Promise.race([exited.then(() => 'done'), new Promise((r) => setImmediate(r, 'running'))])) === 'running') {
    await api(srv.url, 'GET', '/v1/tasks');
    served++;
  }
  t.equal(await exited, 0);
  t.ok(served > 0, `${served} 401s recorded by the server meanwhile`);
  const rs = records();
  t.equal(rs.filter((r) => r.event === 'test.append').length, 200, 'every record of the other process');
  t.same(rs.map((r) => r.seq), rs.map((_, i) => i + 1));
  const v = await verify();
  t.equal(v.code, 0, v.stderr);
});

t.test('audit verify: the chain holds; an edit, a removal or a swap is named; rotation keeps verifying', async (t) => {
  await srv.close();
  open = false;
  let v = await verify();
  t.equal(v.code, 0, v.stderr);
  t.match(v.stdout, /^audit chain holds: \d+ records \(seq 1\.\.\d+\) in 1 file at /);

  const original = readFileSync(auditFile, 'utf8');
  const lines = original.trim().split('\n');
  const at = lines.findIndex((l) => JSON.parse(l).event === 'task.submitted');
  const seq = at + 1;
  const put = (ls: string[]) => writeFileSync(auditFile, `${ls.join('\n')}\n`);

  put(lines.map((l, i) => (i === at ? l.replace('echo out', 'echo OUT') : l)));
  v = await verify();
  t.equal(v.code, 1);
  t.match(v.stderr, new RegExp(`record seq ${seq} at .*audit\\.jsonl:${seq} was edited`));

  put(lines.filter((_, i) => i !== at));
  v = await verify();
  t.equal(v.code, 1);
  t.match(v.stderr, new RegExp(`record seq ${seq} was removed`));

  const swapped = [...lines];
  [swapped[at], swapped[at + 1]] = [swapped[at + 1]!, swapped[at]!];
  put(swapped);
  v = await verify();
  t.equal(v.code, 1);
  t.match(v.stderr, new RegExp(`record seq ${seq} was moved`));

  writeFileSync(auditFile, original);
  // The chain continues into rotated files (a small rotation size for this writer).
  const small = new AuditLog(auditFile, 4096);
  for (let i = 0; i < 40; i++) small.append({ event: 'test.rotation', tenant: null, keyId: null, i, pad: 'p'.repeat(200) });
  const files = chainFiles(auditFile);
  t.ok(files.length > 2, `${files.length} files`);
  v = await verify();
  t.equal(v.code, 0, v.stderr);
  t.match(v.stdout, new RegExp(`in ${files.length} files`));
  const rotated = files[1]!.path;
  const text = readFileSync(rotated, 'utf8');
  writeFileSync(rotated, text.split('\n').slice(1).join('\n'));
  v = await verify();
  t.equal(v.code, 1);
  t.match(v.stderr, new RegExp(`record seq ${files[1]!.firstSeq} was removed`));
  writeFileSync(rotated, text);
  t.equal((await verify()).code, 0);

  t.equal((await cli(['audit', 'verify', '--config', join(dataDir, 'missing.yaml')])).code, 2, 'an unreadable config is exit 2');
});
