// Shared by the restart tests: a server process on a kept data directory, ended at teardown.
import { api } from './client.js';
import { sleep } from './host.js';
import { keptDataDir, type ServerProcess, startServerProcess } from './server.js';

export const tempData = (t: Tap.Test) => keptDataDir(t, 'sbx-reattach-');

/** A server process, ended (SIGKILL) at teardown if the test did not end it. */
export async function server(t: Tap.Test, dataDir: string, extra: Record<string, unknown> = {}): Promise<ServerProcess> {
  const srv = await startServerProcess({ dataDir, queue: { concurrency: 1 }, ...extra });
  t.teardown(async () => {
    srv.kill('SIGKILL');
    await srv.exited;
  });
  return srv;
}

export async function waitStatus(url: string, id: string, status: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await api(url, 'GET', `/v1/tasks/${id}`)).json.status === status) return;
    await sleep(100);
  }
  throw new Error(`task ${id} never reached ${status}`);
}
