import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { api, runTask, submit } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

// gVisor really runs the task: its kernel is gVisor's, not the host's.
const srv = await startTestServer({ engine: { allowedIsolation: ['runc', 'gvisor'] } });
t.teardown(() => srv.close());

t.test('a gvisor task sees gVisor\'s kernel (dmesg, /proc/version, uname), a runc task the host\'s', async (t) => {
  const probe = 'id -u; uname -r; cat /proc/version; dmesg 2>&1 | head -n 3';
  const g = await runTask(srv.url, probe, { isolation: 'gvisor' });
  t.match(g.task, { status: 'succeeded', isolation: 'gvisor' }, 'the task record says gvisor ran it');
  const lines = g.stdout.split('\n');
  t.equal(lines[0], '65532', 'still the sandbox user');
  const hostVersion = readFileSync('/proc/version', 'utf8').trim();
  t.not(lines[2], hostVersion, "/proc/version is not the host's");
  t.match(g.stdout, /Starting gVisor/, "dmesg prints gVisor's boot messages");

  const r = await runTask(srv.url, probe);
  t.match(r.task, { status: 'succeeded', isolation: 'runc' }, 'runc is the default');
  t.equal(r.stdout.split('\n')[2], hostVersion, "a runc task's /proc/version is the host's");
  t.notMatch(r.stdout, /gVisor/);
});

t.test('an isolation the config does not allow is refused with the allowed values; nothing is created', async (t) => {
  const other = await startTestServer();
  t.teardown(() => other.close());
  const before = (await api(other.url, 'GET', '/v1/workspaces')).json.workspaces.length;
  for (const isolation of ['gvisor', 'kata']) {
    const r = await api(other.url, 'POST', '/v1/tasks', { command: 'true', isolation });
    t.equal(r.status, 422, isolation);
    t.match(r.json.error, { code: 'ISOLATION_NOT_ALLOWED', details: { isolation, allowed: ['runc'] } });
  }
  t.equal((await api(other.url, 'GET', '/v1/workspaces')).json.workspaces.length, before, 'no workspace was created');
  t.equal((await api(other.url, 'GET', '/v1/tasks')).json.tasks.length, 0, 'no task was recorded');
  const ok = await submit(other.url, { command: 'true', isolation: 'runc' });
  t.ok(ok.id, 'runc is allowed');
});

t.test('/readyz lists each allowed isolation and whether it starts a hardened container', async (t) => {
  const r = await api(srv.url, 'GET', '/readyz');
  t.equal(r.status, 200);
  t.match(r.json.isolation, [
    { name: 'runc', default: true, canStartContainer: true, error: null },
    { name: 'gvisor', default: false, canStartContainer: true, error: null },
  ]);
  t.match(r.json.runtime, { runsc: /\S/ }, 'the installed runsc version');
});

t.test('gVisor allowed but unusable: its tasks get 503 ISOLATION_UNAVAILABLE, /readyz lists why and fails only when it is the default', async (t) => {
  // A gVisor service socket that nothing answers on.
  const gone = { gvisorSocket: join(srv.dataDir, 'nothing-here.sock'), startTimeoutSeconds: 1 };
  const other = await startTestServer({ engine: { allowedIsolation: ['runc', 'gvisor'], ...gone } });
  t.teardown(() => other.close());
  const r = await api(other.url, 'POST', '/v1/tasks', { command: 'true', isolation: 'gvisor' });
  t.equal(r.status, 503);
  t.match(r.json.error, { code: 'ISOLATION_UNAVAILABLE', details: { isolation: 'gvisor', reason: /engine.gvisorSocket does not answer/ } });
  t.equal((await api(other.url, 'GET', '/v1/tasks')).json.tasks.length, 0, 'no task was recorded');
  t.match((await runTask(other.url, 'echo runc-ok')).stdout, 'runc-ok\n', 'runc tasks still run');
  const ready = await api(other.url, 'GET', '/readyz');
  t.equal(ready.status, 200, 'ready: the default isolation works');
  t.match(ready.json.isolation, [
    { name: 'runc', default: true, canStartContainer: true },
    { name: 'gvisor', default: false, canStartContainer: false, error: /engine.gvisorSocket does not answer/ },
  ]);

  const gvDefault = await startTestServer({ engine: { isolation: 'gvisor', allowedIsolation: ['gvisor'], ...gone } });
  t.teardown(() => gvDefault.close());
  const notReady = await api(gvDefault.url, 'GET', '/readyz');
  t.equal(notReady.status, 503, 'not ready when the default isolation cannot start a container');
  t.match(notReady.json, { ready: false, engine: { canStartContainer: false, error: /gvisorSocket/ } });
  t.equal((await api(gvDefault.url, 'POST', '/v1/tasks', { command: 'true' })).json.error.code, 'ISOLATION_UNAVAILABLE', 'a task without isolation gets the default, unusable');
});
