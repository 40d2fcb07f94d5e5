import t from 'tap';
import { submit, waitDone } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer();
t.teardown(() => srv.close());

t.test('an OOM kill reads failed with reason oom', async (t) => {
  const { id } = await submit(srv.url, {
    command: 'python3 -c "b = bytearray(400 * 1024 * 1024); print(len(b))"',
    resources: { memoryMb: 64 },
  });
  const task = await waitDone(srv.url, id);
  t.match(task, { status: 'failed', reason: 'oom', exitCode: 137 });
});

t.test('a SIGKILL the server did not send is failed with no reason (not oom)', async (t) => {
  const { id } = await submit(srv.url, { command: 'kill -9 $$' });
  t.match(await waitDone(srv.url, id), { status: 'failed', reason: null, exitCode: 137 });
});

t.test('a command that is not found exits 127: failed', async (t) => {
  const { id } = await submit(srv.url, { command: 'definitely-not-a-command' });
  t.match(await waitDone(srv.url, id), { status: 'failed', reason: null, exitCode: 127 });
});
