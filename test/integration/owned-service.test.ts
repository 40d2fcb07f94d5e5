import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ownedPodmanService } from '../helpers/host.js';

const dir = mkdtempSync(join(tmpdir(), 'sbx-owned-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const socketPath = join(dir, 'podman.sock');
const service = () => ownedPodmanService(socketPath);
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');

t.test('a service left behind by a killed server is ended by the next start; stop leaves nothing', async (t) => {
  const first = service();
  await first.start();
  const leftover = Number(readFileSync(`${socketPath}.pid`, 'utf8'));
  t.ok(alive(leftover), 'the first service runs');
  // The server "dies" without stopping its service; a new server starts on the same data dir.
  const second = service();
  await second.start();
  const current = Number(readFileSync(`${socketPath}.pid`, 'utf8'));
  t.not(current, leftover);
  for (let i = 0; i < 50 && alive(leftover); i++) await new Promise((r) => setTimeout(r, 100));
  t.notOk(alive(leftover), 'the leftover service was ended by its recorded PID');
  await second.stop();
  t.notOk(alive(current), 'stop ends the service');
  t.notOk(existsSync(`${socketPath}.pid`), 'and removes its pid file');
  await first.stop(); // its child handle is stale: must not throw or touch other processes
});

t.test('a missing podman binary is named with what to install', async (t) => {
  const broken = ownedPodmanService(join(dir, 'b.sock'), '/nonexistent/podman', 5000);
  await t.rejects(broken.start(), /apt-get install podman runc/);
});
