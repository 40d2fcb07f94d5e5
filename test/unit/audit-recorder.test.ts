// What the recorder writes for each seam's event (fake emitters behind the same interfaces, a
// real log file): task submitted/started/finished, egress decisions, workspaces, 401s, start-up.
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { AuditLog } from '../../src/audit/log.js';
import { AuditRecorder, type ObservedSources } from '../../src/audit/recorder.js';
import { hashKey } from '../../src/auth/keys.js';
import { parseConfig } from '../../src/config/load.js';
import type { TaskRecord } from '../../src/tasks/model.js';
import { verifyChain } from '../../src/audit/verify.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-audit-rec-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = 'hunter2-value-never-recorded';
const task: TaskRecord = {
  id: 'tsk_one',
  tenant: 'acme',
  keyId: 'k-acme',
  status: 'queued',
  command: 'echo hi',
  setup: null,
  fromProjectFile: [],
  image: { name: 'sandboxshift/runtime-python:3.11', markers: [] },
  workspaceId: 'ws_one',
  workspaceReadonly: false,
  createdAt: '2026-12-02T00:00:00.000Z',
  startedAt: null,
  finishedAt: null,
  durationMs: null,
  exitCode: null,
  oomKills: 0,
  reason: null,
  error: null,
  output: { stdoutBytes: 0, stderrBytes: 0, truncated: false },
  resources: { cpus: 1, memoryMb: 256, pids: 64 },
  timeoutSeconds: 30,
  stdin: false,
  network: { allow: ['pypi.org'], unrestricted: false },
  env: { TOKEN: SECRET, MODE: 'fast' },
};

t.test('each event becomes one record of the chain; environment values never appear', async (t) => {
  const path = join(dir, 'a.jsonl');
  const rec = new AuditRecorder(new AuditLog(path, 1024 * 1024), pino({ level: 'silent' }));
  const s = {
    lifecycle: new EventEmitter() as ObservedSources['lifecycle'],
    decisions: new EventEmitter() as ObservedSources['decisions'],
    workspaces: new EventEmitter() as ObservedSources['workspaces'],
    taskOf: (id: string) => (id === task.id ? task : null),
  };
  rec.attach(s);
  const key = 'ssk_' + 'A'.repeat(43);
  rec.configLoaded(parseConfig({ auth: { keys: [{ id: 'k-admin', tenant: 'ops', role: 'admin', sha256: hashKey(key) }] } }), 'srv_1');
  s.lifecycle.emit('transition', { task, from: null, to: 'queued' });
  s.lifecycle.emit('transition', { task: { ...task, status: 'running' }, from: 'queued', to: 'running' });
  s.decisions.emit('decision', task.id, { time: 'x', host: 'pypi.org', port: 443, allowed: true, reason: 'allowlisted', address: '10.0.0.1', bytesUp: 0, bytesDown: 0 });
  s.lifecycle.emit('transition', { task: { ...task, status: 'succeeded', exitCode: 0, durationMs: 1200 }, from: 'running', to: 'succeeded' });
  const ws = { id: 'ws_two', tenant: 'acme', files: 2, bytes: 10, ephemeral: false } as never;
  s.workspaces.emit('created', ws);
  s.workspaces.emit('deleted', ws, 'expired');
  rec.authFailed({ clientAddress: '127.0.0.1', method: 'GET', path: '/v1/tasks' });

  const text = readFileSync(path, 'utf8');
  const rs = text.trim().split('\n').map((l) => JSON.parse(l));
  t.same(
    rs.map((r) => r.event),
    ['config.loaded', 'task.submitted', 'task.started', 'egress.decision', 'task.finished', 'workspace.created', 'workspace.deleted', 'auth.failed'],
  );
  t.match(rs[0], { tenant: null, keyId: null, serverId: 'srv_1', configSha256: /^[0-9a-f]{64}$/, apiKeys: [{ id: 'k-admin', tenant: 'ops', role: 'admin' }] });
  t.notOk(text.includes(hashKey(key)), 'no key hash in the start-up record');
  t.match(rs[1], {
    tenant: 'acme',
    keyId: 'k-acme',
    taskId: 'tsk_one',
    command: 'echo hi',
    image: 'sandboxshift/runtime-python:3.11',
    limits: { cpus: 1, memoryMb: 256, pids: 64, timeoutSeconds: 30 },
    allowlist: ['pypi.org'],
    envNames: ['MODE', 'TOKEN'],
  });
  t.notOk(text.includes(SECRET), 'environment values are never written');
  t.notOk(text.includes('fast'), 'not even harmless-looking ones');
  t.match(rs[3], { tenant: 'acme', keyId: 'k-acme', taskId: 'tsk_one', host: 'pypi.org', port: 443, allowed: true, reason: 'allowlisted', address: '10.0.0.1' });
  t.match(rs[4], { status: 'succeeded', exitCode: 0, durationMs: 1200 });
  t.match(rs[6], { event: 'workspace.deleted', tenant: 'acme', workspaceId: 'ws_two', cause: 'expired' });
  t.match(rs[7], { tenant: null, keyId: null, clientAddress: '127.0.0.1', method: 'GET', path: '/v1/tasks' });
  t.ok((await verifyChain(path)).ok);
});

t.test('a record that cannot be written is logged, and the caller goes on', async (t) => {
  const logged: unknown[] = [];
  const logger = pino({ level: 'error' }, { write: (s: string) => void logged.push(JSON.parse(s)) });
  // A lock another live process (pid 1) holds for longer than the append waits.
  const path = join(dir, 'b.jsonl');
  writeFileSync(`${path}.lock`, '1\n');
  const rec = new AuditRecorder(new AuditLog(path, 1024, undefined, 50), logger);
  t.doesNotThrow(() => rec.authFailed({ clientAddress: '127.0.0.1', method: 'GET', path: '/' }));
  t.match(logged, [{ msg: 'audit record could not be written', event: 'auth.failed' }]);
});
