/**
 * Egress across a server restart: a shutdown closes running tasks' tunnels and sockets; sockets
 * a crash left behind are removed at start-up; queued allowlisted tasks run afterwards with a
 * working proxy; recorded decisions survive.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { api, submit, waitDone } from '../helpers/client.js';
import { echoUpstream, httpUpstream } from '../helpers/egress.js';
import { sleep } from '../helpers/host.js';
import { startTestServer } from '../helpers/server.js';

const dataDir = mkdtempSync(join(tmpdir(), 'sbx-egress-restart-'));
const echo = await echoUpstream();
const web = await httpUpstream();
t.teardown(async () => {
  await echo.close();
  await web.close();
  rmSync(dataDir, { recursive: true, force: true });
});
const config = {
  dataDir,
  queue: { concurrency: 1 },
  egress: { testHosts: { 'echo.test': ['127.0.0.1'], 'ok.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ports: [80, 443, echo.port, web.port] },
};

t.test('a restart closes tunnels and sockets, runs queued allowlisted tasks, keeps decisions', async (t) => {
  const first = await startTestServer(config);
  const holder = await submit(first.url, {
    command: `python3 -c 'import socket,time; s=socket.create_connection(("127.0.0.1",3128)); s.sendall(b"CONNECT echo.test:${echo.port} HTTP/1.1\\r\\n\\r\\n"); print(s.recv(100), flush=True); time.sleep(300)'`,
    network: { allow: ['echo.test'] },
  });
  const queued = await submit(first.url, {
    command: `python3 -c 'import urllib.request; print(urllib.request.urlopen("http://ok.test:${web.port}/after-restart").read().decode(), end="")'`,
    network: { allow: ['ok.test'] },
  });
  for (let i = 0; i < 200 && echo.open.size === 0; i++) await sleep(100);
  t.equal(echo.open.size, 1, 'the running task holds a tunnel');
  await first.close();
  for (let i = 0; i < 50 && echo.open.size > 0; i++) await sleep(100);
  t.equal(echo.open.size, 0, 'shutting down closed the tunnel');
  t.same(readdirSync(join(dataDir, 'egress')), [], 'and removed the socket');

  // What a crash would leave behind: a socket file nobody listens on.
  mkdirSync(join(dataDir, 'egress'), { recursive: true });
  writeFileSync(join(dataDir, 'egress', 'tsk_crashed00000000000.sock'), '');
  const second = await startTestServer(config);
  t.teardown(() => second.close());
  t.notOk(existsSync(join(dataDir, 'egress', 'tsk_crashed00000000000.sock')), 'start-up removed the leftover socket');
  t.match(await waitDone(second.url, holder.id), { status: 'error', reason: 'lost' });
  t.match((await api(second.url, 'GET', `/v1/tasks/${holder.id}/egress`)).json, { decisions: [{ host: 'echo.test', allowed: true }], dropped: 0 }, 'decisions survive');
  const q = await waitDone(second.url, queued.id);
  t.match(q, { status: 'succeeded', network: { allow: ['ok.test'] } });
  t.equal((await api(second.url, 'GET', `/v1/tasks/${queued.id}/logs?stream=stdout`)).text, 'hello /after-restart\n', 'the queued task reached its host after the restart');
});
