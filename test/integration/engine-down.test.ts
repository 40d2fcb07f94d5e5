import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { api, submit, waitDone } from '../helpers/client.js';
import { ownedPodmanService } from '../helpers/host.js';
import { parsePrometheus } from '../helpers/prometheus.js';
import { startTestServer } from '../helpers/server.js';

// A Podman API service of this test's own, so that it can be stopped under a running server.
const dir = mkdtempSync(join(tmpdir(), 'sbx-engine-'));
const socketPath = join(dir, 'podman.sock');
const service = () => ownedPodmanService(socketPath);
let podman = service();
await podman.start();
const srv = await startTestServer({ engine: { socket: socketPath } });
t.teardown(async () => {
  await srv.close();
  await podman.stop();
  rmSync(dir, { recursive: true, force: true });
});

t.test('an unreachable engine: 503 ENGINE_UNAVAILABLE, /readyz 503, /healthz still 200; recovery', async (t) => {
  const ok = await submit(srv.url, { command: 'echo up' });
  t.equal((await waitDone(srv.url, ok.id)).status, 'succeeded');
  t.equal((await api(srv.url, 'GET', '/readyz')).status, 200);

  const errors = async () => parsePrometheus((await api(srv.url, 'GET', '/metrics')).text).value('sandboxshift_engine_errors_total');
  const before = await errors();
  await podman.stop();
  const refused = await api(srv.url, 'POST', '/v1/tasks', { command: 'echo down' });
  t.equal(refused.status, 503);
  t.equal(refused.json.error.code, 'ENGINE_UNAVAILABLE');
  t.equal((await errors())! - before!, 1, 'the refusal counts as an engine error in /metrics');
  const ready = await api(srv.url, 'GET', '/readyz');
  t.equal(ready.status, 503);
  t.match(ready.json, { ready: false, engine: { reachable: false } });
  t.equal((await api(srv.url, 'GET', '/healthz')).status, 200, 'the process itself is up');
  t.equal((await api(srv.url, 'GET', '/v1/tasks?limit=5')).status, 200, 'records stay readable');

  podman = service();
  await podman.start();
  const again = await submit(srv.url, { command: 'echo back' });
  t.equal((await waitDone(srv.url, again.id)).status, 'succeeded', 'the server recovers when the engine is back');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${again.id}/logs`)).text, 'back\n');
  // Readiness comes back by itself (its container probe is re-run within the probe TTL).
  const deadline = Date.now() + 60_000;
  let status = 0;
  while (Date.now() < deadline && (status = (await api(srv.url, 'GET', '/readyz')).status) !== 200) await new Promise((r) => setTimeout(r, 500));
  t.equal(status, 200, '/readyz is 200 again');
});
