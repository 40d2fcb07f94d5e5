/**
 * The real server with `engine.kind: kubernetes`, its kubeconfig pointing at the in-process fake
 * API server, driven through REST and WebSocket as a client would.
 */
import { createServer, type Server } from 'node:net';
import { KubeConfig, NetworkingV1Api } from '@kubernetes/client-node';
import t from 'tap';
import WebSocket from 'ws';
import { api, collectStream, submit, waitDone, type Frame } from '../helpers/client.js';
import { keptDataDir, startServerProcess, startTestServer, type ServerProcess } from '../helpers/server.js';
import { startFakeKube, type FakeKube } from './fake/index.js';

const text = (frames: Frame[], type: string) =>
  frames
    .filter((f) => f.type === type)
    .map((f) => f.data as string)
    .join('');

function kubeEngine(fake: FakeKube, over: Record<string, unknown> = {}) {
  return { engine: { kind: 'kubernetes', kubernetes: { kubeconfig: fake.kubeconfigPath, namespace: fake.namespace, networkPolicyCheck: 'trust', podStartTimeoutSeconds: 60, ...over } } };
}

async function fakeKube(t: Tap.Test, opts: Parameters<typeof startFakeKube>[0] = {}): Promise<FakeKube> {
  const fake = await startFakeKube(opts);
  t.teardown(() => fake.close());
  return fake;
}

/** A loopback listener this test opened: the canary's "must not reach" target. */
async function listener(t: Tap.Test): Promise<string> {
  const server: Server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const addr = server.address() as { port: number };
  return `127.0.0.1:${addr.port}`;
}

t.test('one cluster for the ordinary scenarios', async (t) => {
  const fake = await fakeKube(t);
  const srv = await startTestServer(kubeEngine(fake));
  t.teardown(() => srv.close());

  t.test('submit, stdout and stderr apart, the exit code, and the record says pids are not enforced', async (t) => {
    const { id } = await submit(srv.url, { command: 'echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2; exit 3' });
    const { frames, closeCode } = await collectStream(srv.wsUrl, id);
    t.equal(closeCode, 1000);
    t.equal(text(frames, 'stdout'), 'out1\nout2\n');
    t.equal(text(frames, 'stderr'), 'err1\n');
    t.match(frames[frames.length - 1], { type: 'exit', status: 'failed', exitCode: 3 });
    const task = await waitDone(srv.url, id);
    t.match(task, { status: 'failed', exitCode: 3, reason: null });
    t.match(task.notes.join('\n'), /resources\.pids is not enforced/, 'the task record says pids are not enforced per pod');
    t.same(fake.objects('jobs').filter((j) => j.metadata.annotations?.['sandboxshift.io/task'] === id), [], 'its Job is deleted');
  });

  t.test('a timeout ends the task (timed_out) and its pod', async (t) => {
    const started = Date.now();
    const { id } = await submit(srv.url, { command: 'echo started; sleep 60', timeoutSeconds: 2 });
    const task = await waitDone(srv.url, id, 60_000);
    t.match(task, { status: 'timed_out', reason: 'timeout' });
    t.ok(Date.now() - started < 30_000, 'ended long before the command would have');
    t.same(fake.objects('pods').filter((p) => p.metadata.annotations?.['sandboxshift.io/task'] === id), [], 'no pod left');
  });

  t.test('cancel ends a running task', async (t) => {
    const { id } = await submit(srv.url, { command: 'echo up; sleep 60' });
    const seen = collectStream(srv.wsUrl, id, {
      onFrame: (f) => {
        if (f.type === 'stdout' && String(f.data).includes('up')) void api(srv.url, 'POST', `/v1/tasks/${id}/cancel`);
      },
    });
    const { frames } = await seen;
    t.match(frames[frames.length - 1], { type: 'exit', status: 'cancelled' });
    t.match(await waitDone(srv.url, id), { status: 'cancelled', reason: 'cancelled' });
  });

  t.test('stdin frames reach the command, eof ends it', async (t) => {
    const { id } = await submit(srv.url, { command: 'cat; echo "[eof]"', stdin: true });
    const { frames } = await collectStream(srv.wsUrl, id, {
      onOpen: (ws: WebSocket) => {
        ws.send(JSON.stringify({ type: 'stdin', data: 'hello\n' }));
        ws.send(JSON.stringify({ type: 'stdin', eof: true }));
      },
    });
    t.equal(text(frames, 'stdout'), 'hello\n[eof]\n');
    t.match(await waitDone(srv.url, id), { status: 'succeeded', exitCode: 0 });
  });

  t.test('the workspace goes to the pod and the task’s changes come back to it', async (t) => {
    const { id } = await submit(srv.url, { command: 'cat in.txt; echo changed > out.txt; rm in.txt', workspace: { files: { 'in.txt': 'from the client\n' } } });
    const task = await waitDone(srv.url, id);
    t.match(task, { status: 'succeeded' });
    const run = await api(srv.url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`);
    t.equal(run.text, 'from the client\n', 'the uploaded file was in the pod');
    const out = await api(srv.url, 'GET', `/v1/workspaces/${task.workspaceId}/files/out.txt`);
    t.equal(out.status, 200);
    t.equal(out.text, 'changed\n', 'the new file is in the workspace');
    t.equal((await api(srv.url, 'GET', `/v1/workspaces/${task.workspaceId}/files/in.txt`)).status, 404, 'the removed file is gone');
  });

  t.test('a workspace larger than engine.kubernetes.maxWorkspaceBytes never reaches the cluster', async (t) => {
    const small = await startTestServer(kubeEngine(fake, { maxWorkspaceBytes: 4096 }));
    t.teardown(() => small.close());
    const before = fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/jobs')).length;
    const { id } = await submit(small.url, { command: 'true', workspace: { files: { 'big.txt': 'x'.repeat(20_000) } } });
    const task = await waitDone(small.url, id);
    t.match(task, { status: 'error', reason: 'engine_error' });
    t.match(task.error, /engine\.kubernetes\.maxWorkspaceBytes \(4096 bytes\)/, 'the error names the bound');
    t.equal(fake.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/jobs')).length, before, 'no Job was created');
  });
});

t.test('pods/attach refused (403): the task ends with an error that says what the account lacks', async (t) => {
  const fake = await fakeKube(t, { denyAttachCreate: true });
  const srv = await startTestServer(kubeEngine(fake));
  t.teardown(() => srv.close());
  const { id } = await submit(srv.url, { command: 'echo never' });
  const task = await waitDone(srv.url, id);
  t.match(task, { status: 'error', reason: 'engine_error' });
  t.match(task.error, /pods\/attach \(403 Forbidden\).*get and create on pods\/attach/);
  t.same(fake.objects('jobs'), [], 'its Job is deleted');
});

t.test('NetworkPolicy self-test: a cluster that lets the canary through refuses allowlisted tasks', async (t) => {
  const target = await listener(t);
  const fake = await fakeKube(t);
  const srv = await startTestServer(kubeEngine(fake, { networkPolicyCheck: 'canary', canaryTarget: target }));
  t.teardown(() => srv.close());
  const r = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', network: { allow: ['example.com'] } });
  t.equal(r.status, 503);
  t.equal(r.json.error.code, 'EGRESS_POLICY_UNENFORCED');
  t.match(r.json.error.details.reason, new RegExp(`does not enforce NetworkPolicy.*reached ${target.replace('.', '\\.')}`));
  const ready = await api(srv.url, 'GET', '/readyz');
  t.match(ready.json.networkPolicy, { check: 'canary', enforced: false });
  t.match((await waitDone(srv.url, (await submit(srv.url, { command: 'echo ok' })).id)).status, 'succeeded', 'a task without an allowlist still runs');
});

t.test('NetworkPolicy self-test: an enforcing cluster passes it', async (t) => {
  const target = await listener(t);
  const fake = await fakeKube(t, { enforceNetworkPolicy: true });
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  await kc.makeApiClient(NetworkingV1Api).createNamespacedNetworkPolicy({
    namespace: fake.namespace,
    body: {
      metadata: { name: 'sandboxshift-default-deny' },
      spec: { podSelector: { matchLabels: { 'app.kubernetes.io/managed-by': 'sandboxshift' } }, policyTypes: ['Ingress', 'Egress'], egress: [] },
    },
  });
  const srv = await startTestServer(kubeEngine(fake, { networkPolicyCheck: 'canary', canaryTarget: target }));
  t.teardown(() => srv.close());
  const ready = await api(srv.url, 'GET', '/readyz');
  t.match(ready.json.networkPolicy, { check: 'canary', enforced: true, error: null });
  const r = await api(srv.url, 'POST', '/v1/tasks', { command: 'true', network: { allow: ['example.com'] } });
  t.not(r.json?.error?.code, 'EGRESS_POLICY_UNENFORCED', 'allowlisted tasks are not refused for the policy');
});

t.test('kill -9 of the server: the next one re-attaches the running task; the gap comes from pods/log, marked combined', async (t) => {
  const { start } = await restartableServers(t, 'sbx-kube-restart-');
  const first = await start();
  const LINES = 40;
  const { id } = await submit(first.url, { command: `for i in $(seq 1 ${LINES}); do echo line$i; sleep 0.1; done; exit 5` });
  let killed = false;
  await collectStream(first.wsUrl, id, {
    onFrame: (f) => {
      if (!killed && f.type === 'stdout' && String(f.data).includes('line5')) {
        killed = true;
        first.kill('SIGKILL');
      }
    },
  }).catch(() => undefined);
  await first.exited;
  await new Promise((r) => setTimeout(r, 1000)); // lines keep coming while no server runs
  const second = await start();
  const task = await waitDone(second.url, id, 60_000);
  t.match(task, { status: 'failed', exitCode: 5 }, 'the exit code is the pod’s');
  const out = (await api(second.url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`)).text;
  let at = 0;
  for (let i = 1; i <= LINES; i++) {
    const next = out.indexOf(`line${i}\n`, at);
    if (next < 0) {
      t.fail(`line${i} missing after the restart: ${JSON.stringify(out)}`);
      break;
    }
    at = next;
  }
  t.ok(at > 0, 'every line, in order');
  t.match(task.notes.join('\n'), /recovered from pods\/log.*stdout and stderr combined/, 'the record says which part is combined');
});

t.test('kill -9 of the server and the task ends while none runs: the next server writes its workspace back from pods/log', async (t) => {
  const { start, fake } = await restartableServers(t, 'sbx-kube-writeback-');
  const first = await start();
  const { id } = await submit(first.url, {
    command: 'echo started; sleep 1; cat in.txt > copy.txt; echo made > out.txt; rm in.txt; echo finished',
    workspace: { files: { 'in.txt': 'from the client\n', 'keep.txt': 'kept\n' } },
  });
  let killed = false;
  await collectStream(first.wsUrl, id, {
    onFrame: (f) => {
      if (!killed && f.type === 'stdout' && String(f.data).includes('started')) {
        killed = true;
        first.kill('SIGKILL');
      }
    },
  }).catch(() => undefined);
  await first.exited;
  const until = Date.now() + 30_000;
  while (!fake.objects('pods').some((p) => p.metadata.annotations?.['sandboxshift.io/task'] === id && p.status?.phase === 'Succeeded')) {
    if (Date.now() > until) throw new Error('the task pod did not end');
    await new Promise((r) => setTimeout(r, 50));
  }
  const second = await start();
  const task = await waitDone(second.url, id, 60_000);
  t.match(task, { status: 'succeeded', exitCode: 0 });
  const file = (name: string) => api(second.url, 'GET', `/v1/workspaces/${task.workspaceId}/files/${name}`);
  t.equal((await file('out.txt')).text, 'made\n', 'a file the task made is in the workspace');
  t.equal((await file('copy.txt')).text, 'from the client\n', 'with the content it gave it');
  t.equal((await file('keep.txt')).text, 'kept\n', 'an untouched file stayed');
  t.equal((await file('in.txt')).status, 404, 'the file it removed is gone');
  t.match(task.notes.join('\n'), /the workspace was written back from pods\/log/, 'the record says where the write-back came from');
  t.notMatch(task.notes.join('\n'), /not written back/);
  const out = (await api(second.url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`)).text;
  t.match(out, /finished\n$/, 'the output ends before the boundary');
  t.notMatch(out, /SANDBOXSHIFT-WRITEBACK/, 'no boundary or archive text in the output');
});

/** Server processes on one fake cluster and one data directory, each started anew by `start()`, all killed at the end. */
async function restartableServers(t: Tap.Test, prefix: string): Promise<{ fake: FakeKube; start: () => Promise<ServerProcess> }> {
  const fake = await fakeKube(t);
  const dataDir = keptDataDir(t, prefix);
  const procs: ServerProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) {
      p.kill('SIGKILL');
      await p.exited;
    }
  });
  const start = async () => {
    const p = await startServerProcess({ dataDir, ...kubeEngine(fake) });
    procs.push(p);
    return p;
  };
  return { fake, start };
}
