import Docker from 'dockerode';
import t from 'tap';
import { api, runTask, submit, waitDone } from '../helpers/client.js';
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
  t.ok(task.oomKills >= 1, 'the kill is counted');
});

t.test('an OOM kill of a child is counted, whatever the exit code', async (t) => {
  const hog = 'python3 -c "b = bytearray(400 * 1024 * 1024)"';
  const survived = await runTask(srv.url, `${hog}; echo "child=$?"`, { resources: { memoryMb: 64 } });
  t.equal(survived.stdout, 'child=137\n', 'the child was killed and the shell went on');
  t.match(survived.task, { status: 'succeeded', exitCode: 0, reason: null });
  t.ok(survived.task.oomKills >= 1, `the kill is on the task (oomKills ${survived.task.oomKills})`);
  const failed = await runTask(srv.url, `${hog}; exit 3`, { resources: { memoryMb: 64 } });
  t.match(failed.task, { status: 'failed', exitCode: 3, reason: 'oom' }, 'a non-zero exit after a kill in the tree is oom');
  t.ok(failed.task.oomKills >= 1);
  const plain = await runTask(srv.url, 'exit 3');
  t.match(plain.task, { status: 'failed', exitCode: 3, reason: null, oomKills: 0 }, 'no kill, no oom');
});

t.test('a SIGKILL the server did not send is failed with no reason (not oom)', async (t) => {
  const { id } = await submit(srv.url, { command: 'kill -9 $$' });
  t.match(await waitDone(srv.url, id), { status: 'failed', reason: null, exitCode: 137 });
});

t.test('a command that is not found exits 127: failed', async (t) => {
  const { id } = await submit(srv.url, { command: 'definitely-not-a-command' });
  t.match(await waitDone(srv.url, id), { status: 'failed', reason: null, exitCode: 127 });
});

t.test('an image that vanished after submit: error with reason image_missing', async (t) => {
  const docker = new Docker({ socketPath: srv.services.socketPath });
  const tag = { repo: 'localhost/sandboxshift-test/vanishing', tag: String(process.pid) };
  await docker.getImage('sandboxshift/runtime-python:3.11').tag(tag);
  const name = `${tag.repo}:${tag.tag}`;
  const s2 = await startTestServer({
    queue: { concurrency: 1 },
    images: {
      languages: { python: { image: 'sandboxshift/runtime-python:3.11' }, vanishing: { image: name } },
      multi: null,
      default: 'python',
      markers: {},
    },
  });
  t.teardown(() => s2.close());
  const blocker = await submit(s2.url, { command: 'sleep 30', timeoutSeconds: 60 });
  const doomed = await submit(s2.url, { command: 'echo never', image: name });
  await docker.getImage(name).remove();
  await api(s2.url, 'POST', `/v1/tasks/${blocker.id}/cancel`);
  const failed = await waitDone(s2.url, doomed.id);
  t.match(failed, { status: 'error', reason: 'image_missing', exitCode: null });
  t.match(failed.error, /could not start/, 'the record says what went wrong');
  t.equal((await api(s2.url, 'GET', `/v1/tasks/${doomed.id}/logs?stream=stderr`)).text, '', "the task's own streams stay its own");
});
