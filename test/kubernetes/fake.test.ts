/**
 * The fake kube-apiserver and kubelet, driven by the real @kubernetes/client-node 1.4 the way the
 * Kubernetes runtime drives a cluster: Jobs created suspended and resumed, the Pod the Job
 * controller makes, an informer over pods (through dropped watches and 410 Gone), attach with
 * stdout and stderr apart and stdin/stdinOnce, pods/log, deletes that orphan or propagate,
 * deadlines, TTL, Secrets in env, NetworkPolicy isolation, and the faults tests inject.
 */
import * as k8s from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { PassThrough } from 'node:stream';
import t from 'tap';
import WebSocket from 'ws';
import { startFakeKube, type FakeKube, type FakeKubeOptions } from './fake/index.js';

interface Cluster {
  fake: FakeKube;
  kc: k8s.KubeConfig;
  batch: k8s.BatchV1Api;
  core: k8s.CoreV1Api;
  net: k8s.NetworkingV1Api;
  ns: string;
}

async function cluster(tt: { teardown(fn: () => unknown): void }, opts: FakeKubeOptions = {}): Promise<Cluster> {
  const fake = await startFakeKube(opts);
  tt.teardown(() => fake.close());
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  return {
    fake,
    kc,
    batch: kc.makeApiClient(k8s.BatchV1Api),
    core: kc.makeApiClient(k8s.CoreV1Api),
    net: kc.makeApiClient(k8s.NetworkingV1Api),
    ns: fake.namespace,
  };
}

function job(name: string, script: string, extra: { spec?: Record<string, unknown>; pod?: Record<string, unknown>; container?: Record<string, unknown>; labels?: Record<string, string> } = {}): k8s.V1Job {
  const labels = { 'app.kubernetes.io/managed-by': 'sandboxshift', 'sandboxshift.io/task-id': name, ...(extra.labels ?? {}) };
  return {
    metadata: { name, labels },
    spec: {
      suspend: true,
      backoffLimit: 0,
      podFailurePolicy: { rules: [{ action: 'FailJob', onExitCodes: { operator: 'NotIn', values: [0] } }] },
      ...extra.spec,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: 'Never',
          terminationGracePeriodSeconds: 2,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 },
          containers: [
            {
              name: 'task',
              image: 'sandboxshift/runner:test',
              workingDir: '/workspace',
              command: ['/bin/sh', '-c', script],
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } },
              volumeMounts: [
                { name: 'workspace', mountPath: '/workspace' },
                { name: 'tmp', mountPath: '/tmp' },
              ],
              ...extra.container,
            },
          ],
          volumes: [
            { name: 'workspace', emptyDir: {} },
            { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } },
          ],
          ...extra.pod,
        },
      },
    },
  } as k8s.V1Job;
}

const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

async function resume(c: Cluster, name: string): Promise<void> {
  await c.batch.patchNamespacedJob({ namespace: c.ns, name, body: { spec: { suspend: false } } }, mergePatch);
}

async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function podOf(c: Cluster, jobName: string): any | undefined {
  return c.fake.objects('pods').find((p) => p.metadata.labels?.['batch.kubernetes.io/job-name'] === jobName);
}

function podIn(c: Cluster, jobName: string, phases: string[]): Promise<any> {
  return waitFor(`pod of ${jobName} in ${phases.join('/')}`, () => {
    const p = podOf(c, jobName);
    return p && phases.includes(p.status?.phase) ? p : undefined;
  });
}

interface Attached {
  ws: WebSocket;
  stdout: () => string;
  stderr: () => string;
  stdin: PassThrough;
  closed: Promise<void>;
}

async function attach(c: Cluster, pod: string, withStdin = true): Promise<Attached> {
  const out = new PassThrough();
  const err = new PassThrough();
  const stdin = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const ws = (await new k8s.Attach(c.kc).attach(c.ns, pod, 'task', out, err, withStdin ? stdin : null, false)) as unknown as WebSocket;
  const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
  return { ws, stdout: () => o, stderr: () => e, stdin, closed };
}

async function readLog(c: Cluster, pod: string, options: Record<string, unknown> = {}): Promise<string> {
  const sink = new PassThrough();
  let text = '';
  sink.on('data', (d) => (text += d));
  const ended = new Promise((r) => sink.on('end', r));
  await new k8s.Log(c.kc).log(c.ns, pod, 'task', sink, options);
  await ended;
  return text;
}

/** ws rejects with an ErrorEvent-like object, not an Error. */
function errText(e: unknown): string {
  const x = e as { message?: string; error?: { message?: string } };
  return String(x?.message ?? x?.error?.message ?? e);
}

/** True while a process of the group is alive (zombies, which this machine's init may reap late, do not count). */
function groupAlive(pgid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue;
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') return true;
  }
  return false;
}

t.test('a suspended Job makes no pod; resumed, exactly one pod runs the command for real as the pod user', async (t) => {
  const c = await cluster(t);
  await c.core.createNamespacedSecret({ namespace: c.ns, body: { metadata: { name: 'ss-one' }, stringData: { proxyUrl: 'http://u:p@127.0.0.1:9' } } });
  const created = await c.batch.createNamespacedJob({
    namespace: c.ns,
    fieldValidation: 'Strict',
    body: job('ss-one', 'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) pwd=$(pwd) proxy=$HTTPS_PROXY"; ls -ld /workspace | cut -c1-10; touch /etc/fake-kube-probe 2>/dev/null && echo rootfs-writable || echo rootfs-read-only; echo oops >&2; exit 3', {
      container: { env: [{ name: 'HTTPS_PROXY', valueFrom: { secretKeyRef: { name: 'ss-one', key: 'proxyUrl' } } }] },
    }),
  });
  t.ok(created.metadata?.uid, 'the Job has a uid');
  t.equal(created.spec?.selector?.matchLabels?.['batch.kubernetes.io/controller-uid'], created.metadata?.uid, 'the selector is defaulted');

  const dup = await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-one', 'true') }).then(
    () => undefined,
    (err: k8s.ApiException<string>) => err,
  );
  t.equal(dup?.code, 409, 'a duplicate create is 409');
  t.match(JSON.parse(String(dup?.body)), { kind: 'Status', reason: 'AlreadyExists', code: 409 }, 'with an AlreadyExists Status');

  await new Promise((r) => setTimeout(r, 200));
  t.equal(c.fake.objects('pods').length, 0, 'no pod while the Job is suspended');
  const suspended = await c.batch.readNamespacedJob({ namespace: c.ns, name: 'ss-one' });
  t.match(suspended.status?.conditions, [{ type: 'Suspended', status: 'True' }]);

  // the secret owned by the job, as the runtime does it
  await c.core.patchNamespacedSecret(
    { namespace: c.ns, name: 'ss-one', body: { metadata: { ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: 'ss-one', uid: created.metadata!.uid! }] } } },
    mergePatch,
  );
  await resume(c, 'ss-one');
  const pod = await podIn(c, 'ss-one', ['Failed']);
  t.equal(c.fake.objects('pods').length, 1, 'exactly one pod');
  t.match(pod.metadata.ownerReferences, [{ kind: 'Job', name: 'ss-one', uid: created.metadata!.uid, controller: true }]);
  t.equal(pod.metadata.labels['batch.kubernetes.io/job-name'], 'ss-one');
  t.equal(pod.metadata.labels['sandboxshift.io/task-id'], 'ss-one', 'the template labels are on the pod');
  t.match(pod.status.containerStatuses[0].state.terminated, { exitCode: 3, reason: 'Error' });

  const log = await readLog(c, pod.metadata.name);
  t.match(log, /uid=65532 gid=65532 groups=65532 pwd=\/workspace proxy=http:\/\/u:p@127\.0\.0\.1:9\n/, 'runs as the pod user in workingDir with the secret in env');
  t.match(log, /drwxrwsrwx\n/, 'the emptyDir is group-writable and setgid for fsGroup');
  t.match(log, /rootfs-read-only\n/, 'the root filesystem is read-only');
  t.match(log, /oops\n/, 'stderr is in the log');

  const failed = await waitFor('job failed', async () => {
    const j = await c.batch.readNamespacedJob({ namespace: c.ns, name: 'ss-one' });
    return j.status?.conditions?.some((x) => x.type === 'Failed' && x.status === 'True') ? j : undefined;
  });
  t.match(failed.status?.conditions?.find((x) => x.type === 'Failed'), { reason: 'PodFailurePolicy' });
  t.match(failed.status?.conditions?.find((x) => x.type === 'Suspended'), { status: 'False' });
  t.equal(failed.status?.failed, 1);

  await c.batch.deleteNamespacedJob({ namespace: c.ns, name: 'ss-one', propagationPolicy: 'Background' });
  await waitFor('pod and secret collected', () => c.fake.objects('pods').length === 0 && c.fake.objects('secrets').length === 0);
  t.pass('Background delete removed the pod and the owned Secret');
});

t.test('a pod waits for its Secret (CreateContainerConfigError) and starts once it exists', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({
    namespace: c.ns,
    body: job('ss-wait', 'echo "token=$TOKEN"', { container: { env: [{ name: 'TOKEN', valueFrom: { secretKeyRef: { name: 'ss-wait', key: 'token' } } }] } }),
  });
  await resume(c, 'ss-wait');
  const waiting = await waitFor('config error', () => {
    const p = podOf(c, 'ss-wait');
    return p?.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CreateContainerConfigError' ? p : undefined;
  });
  t.match(waiting.status.containerStatuses[0].state.waiting.message, /secret "ss-wait" not found/);
  t.equal(waiting.status.phase, 'Pending');
  const early = await attach(c, waiting.metadata.name).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(errText(early), /Unexpected server response: 500/, 'attach before the container runs is refused');
  await c.core.createNamespacedSecret({ namespace: c.ns, body: { metadata: { name: 'ss-wait' }, data: { token: Buffer.from('s3cret').toString('base64') } } });
  const pod = await podIn(c, 'ss-wait', ['Succeeded']);
  t.equal(await readLog(c, pod.metadata.name), 'token=s3cret\n');
});

t.test('attach: stdout and stderr apart, stdin with stdinOnce closed by the client, nothing replayed', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({
    namespace: c.ns,
    body: job('ss-att', 'echo before-attach; IFS= read -r gate; echo "gate=$gate"; echo to-stderr >&2; cat; echo "stdin-closed"; exit 0', {
      container: { stdin: true, stdinOnce: true },
    }),
  });
  await resume(c, 'ss-att');
  const running = await podIn(c, 'ss-att', ['Running']);
  await waitFor('output before attach logged', async () => (await readLog(c, running.metadata.name)).includes('before-attach') || undefined);
  const a = await attach(c, running.metadata.name);
  t.equal(a.ws.protocol, 'v5.channel.k8s.io', 'client-node negotiates v5');
  a.stdin.write('open-sesame\n');
  // stdout and stderr are separate pipes: their relative order is only known across a pause
  await waitFor('stderr', () => a.stderr().includes('to-stderr') || undefined);
  a.stdin.write('rest of stdin\n');
  a.stdin.end();
  await a.closed;
  t.equal(a.stdout(), 'gate=open-sesame\nrest of stdin\nstdin-closed\n', 'stdout only, without what came before the attach');
  t.equal(a.stderr(), 'to-stderr\n', 'stderr apart');
  const pod = await podIn(c, 'ss-att', ['Succeeded']);
  t.match(pod.status.containerStatuses[0].state.terminated, { exitCode: 0, reason: 'Completed' });
  const log = await readLog(c, pod.metadata.name);
  t.equal(log, 'before-attach\ngate=open-sesame\nto-stderr\nrest of stdin\nstdin-closed\n', 'pods/log merges both streams, before and after the attach');
  const attachErr = await attach(c, pod.metadata.name).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(errText(attachErr), /400/, 'attach to a completed pod is refused');
});

t.test('without stdinOnce, a client closing its stdin leaves the container stdin open; a second attach still feeds it', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({
    namespace: c.ns,
    body: job('ss-multi', 'IFS= read -r a; echo "a=$a"; IFS= read -r b; echo "b=$b"', { container: { stdin: true, stdinOnce: false } }),
  });
  await resume(c, 'ss-multi');
  const pod = await podIn(c, 'ss-multi', ['Running']);
  const first = await attach(c, pod.metadata.name);
  first.stdin.write('one\n');
  await waitFor('first line echoed', () => first.stdout().includes('a=one') || undefined);
  first.stdin.end();
  await new Promise((r) => setTimeout(r, 150));
  t.equal(podOf(c, 'ss-multi').status.phase, 'Running', 'still running: its stdin was not closed');
  first.ws.close();
  const second = await attach(c, pod.metadata.name);
  second.stdin.write('two\n');
  await second.closed;
  t.equal(second.stdout(), 'b=two\n');
  await podIn(c, 'ss-multi', ['Succeeded']);
});

t.test('a dropped attach: the client sees the socket close; with stdinOnce the container stdin is closed; output still reaches the log', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({
    namespace: c.ns,
    body: job('ss-drop', 'cat; echo "after-eof"', { container: { stdin: true, stdinOnce: true } }),
  });
  await resume(c, 'ss-drop');
  const pod = await podIn(c, 'ss-drop', ['Running']);
  const a = await attach(c, pod.metadata.name);
  a.stdin.write('partial\n');
  await waitFor('echo', () => a.stdout().includes('partial') || undefined);
  let code = 0;
  a.ws.on('close', (c2: number) => (code = c2));
  c.fake.faults.dropAttaches();
  await a.closed;
  t.equal(code, 1006, 'closed abnormally, without a close frame');
  const done = await podIn(c, 'ss-drop', ['Succeeded']);
  t.equal(await readLog(c, done.metadata.name), 'partial\nafter-eof\n');
  t.notOk(a.stdout().includes('after-eof'), 'nothing after the drop reached the dropped client');
});

t.test('attach over v4.channel.k8s.io (no CLOSE signal): stdin ends when the socket closes', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-v4', 'cat; echo done-v4', { container: { stdin: true, stdinOnce: true } }) });
  await resume(c, 'ss-v4');
  const pod = await podIn(c, 'ss-v4', ['Running']);
  const url = `${c.fake.url.replace('http', 'ws')}/api/v1/namespaces/${c.ns}/pods/${pod.metadata.name}/attach?container=task&stdin=true&stdout=true&stderr=true&tty=false`;
  const token = /token: (\S+)/.exec(readFileSync(c.fake.kubeconfigPath, 'utf8'))![1];
  const ws = new WebSocket(url, ['v4.channel.k8s.io'], { headers: { Authorization: `Bearer ${token}` } });
  const frames: Buffer[] = [];
  ws.on('message', (d: Buffer) => frames.push(d));
  await new Promise((r) => ws.on('open', r));
  t.equal(ws.protocol, 'v4.channel.k8s.io');
  ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('via-v4\n')]));
  await waitFor('echo', () => frames.some((f) => f[0] === 1 && f.subarray(1).toString().includes('via-v4')) || undefined);
  ws.close();
  const done = await podIn(c, 'ss-v4', ['Succeeded']);
  t.equal(await readLog(c, done.metadata.name), 'via-v4\ndone-v4\n');
});

t.test('the status channel ends an attach when the container exits', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-status', 'IFS= read -r x; echo out; exit 7', { container: { stdin: true, stdinOnce: true } }) });
  await resume(c, 'ss-status');
  const pod = await podIn(c, 'ss-status', ['Running']);
  const url = `${c.fake.url.replace('http', 'ws')}/api/v1/namespaces/${c.ns}/pods/${pod.metadata.name}/attach?container=task&stdin=true&stdout=true&stderr=true`;
  const token = /token: (\S+)/.exec(readFileSync(c.fake.kubeconfigPath, 'utf8'))![1];
  const ws = new WebSocket(url, ['v5.channel.k8s.io', 'v4.channel.k8s.io'], { headers: { Authorization: `Bearer ${token}` } });
  const frames: Buffer[] = [];
  ws.on('message', (d: Buffer) => frames.push(d));
  await new Promise((r) => ws.on('open', r));
  ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('go\n')]));
  const code = await new Promise<number>((r) => ws.on('close', (x: number) => r(x)));
  t.equal(code, 1000);
  t.same(frames.map((f) => f[0]), [1, 3], 'stdout, then status');
  t.same(JSON.parse(frames[1]!.subarray(1).toString()), { metadata: {}, status: 'Success' });
  const done = await podIn(c, 'ss-status', ['Failed']);
  t.equal(done.status.containerStatuses[0].state.terminated.exitCode, 7, 'the exit code is in the pod status');
});

t.test('pods/attach answers 403 when the role lacks create on pods/attach', async (t) => {
  const c = await cluster(t, { denyAttachCreate: true });
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-rbac', 'sleep 5', { container: { stdin: true, stdinOnce: true } }) });
  await resume(c, 'ss-rbac');
  const pod = await podIn(c, 'ss-rbac', ['Running']);
  const err = await attach(c, pod.metadata.name).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(errText(err), /Unexpected server response: 403/);
  t.ok(c.fake.requests.some((r) => r.path.endsWith('/attach')), 'the attach request reached the server');
  t.match(await readLog(c, pod.metadata.name), '', 'pods/log still works');
});

t.test('the informer: ADDED/MODIFIED through a dropped watch and through 410 Gone, which makes it list again', async (t) => {
  const c = await cluster(t);
  const selector = 'app.kubernetes.io/managed-by=sandboxshift';
  const informer = k8s.makeInformer(c.kc, `/api/v1/namespaces/${c.ns}/pods`, () => c.core.listNamespacedPod({ namespace: c.ns, labelSelector: selector }), selector);
  const phases = new Map<string, string>();
  const errors: unknown[] = [];
  informer.on('add', (p) => phases.set(p.metadata!.name!, p.status?.phase ?? ''));
  informer.on('update', (p) => phases.set(p.metadata!.name!, p.status?.phase ?? ''));
  informer.on('delete', (p) => phases.set(p.metadata!.name!, 'deleted'));
  informer.on('error', (e) => errors.push(e));
  await informer.start();
  t.teardown(() => informer.stop());
  const lists = (): number => c.fake.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/pods') && r.query.watch === undefined).length;
  const watches = (): Array<Record<string, string>> => c.fake.requests.filter((r) => r.path.endsWith('/pods') && r.query.watch === 'true').map((r) => r.query);
  t.equal(lists(), 1);
  t.equal(watches()[0]?.labelSelector, selector, 'the watch carries the labelSelector');

  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-inf1', 'IFS= read -r x', { container: { stdin: true, stdinOnce: true } }) });
  await resume(c, 'ss-inf1');
  const p1 = (await podIn(c, 'ss-inf1', ['Running'])).metadata.name;
  await waitFor('informer sees Running', () => phases.get(p1) === 'Running' || undefined);

  c.fake.faults.dropWatches();
  await waitFor('a second watch', () => watches().length >= 2 || undefined);
  t.equal(lists(), 1, 'a cleanly ended watch is resumed from its resourceVersion, no new list');
  t.not(watches()[1]!.resourceVersion, '', 'from the last resourceVersion it saw');
  // an unrelated pod outside the selector is not delivered
  await c.core.createNamespacedPod({ namespace: c.ns, body: { metadata: { name: 'other', labels: { app: 'other' } }, spec: { restartPolicy: 'Never', containers: [{ name: 'task', image: 'x', command: ['true'] }] } } });

  c.fake.faults.expireWatches();
  c.fake.faults.dropWatches();
  await waitFor('a new list after 410', () => lists() >= 2 || undefined);
  const p1Done = podOf(c, 'ss-inf1');
  await c.core.deleteNamespacedPod({ namespace: c.ns, name: p1Done.metadata.name, gracePeriodSeconds: 0 });
  await waitFor('informer sees the delete', () => phases.get(p1) === 'deleted' || undefined);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-inf2', 'true') });
  await resume(c, 'ss-inf2');
  const p2 = (await podIn(c, 'ss-inf2', ['Succeeded'])).metadata.name;
  await waitFor('informer sees the second pod finish', () => phases.get(p2) === 'Succeeded' || undefined);
  t.notOk(phases.has('other'), 'the selector filtered the other pod');
  t.same(errors, [], 'no error reached the informer');
});

t.test('a watch from an expired resourceVersion gets one ERROR event with a 410 Status', async (t) => {
  const c = await cluster(t);
  const list = await c.core.listNamespacedPod({ namespace: c.ns });
  c.fake.faults.expireWatches();
  const events: Array<{ type: string; obj: any }> = [];
  let watch: AbortController | undefined;
  const done = new Promise<unknown>((resolve) => {
    void new k8s.Watch(c.kc)
      .watch(`/api/v1/namespaces/${c.ns}/pods`, { resourceVersion: list.metadata!.resourceVersion }, (type, obj) => events.push({ type, obj }), resolve)
      .then((w) => (watch = w));
  });
  const ended = await Promise.race([done, new Promise((r) => setTimeout(() => r('still open'), 5000))]);
  watch?.abort();
  t.equal(ended, null, 'the server ends the watch');
  t.match(events, [{ type: 'ERROR', obj: { kind: 'Status', code: 410, reason: 'Expired' } }]);
});

t.test('delete: a Job deleted without propagationPolicy orphans its pod; Background and Foreground remove it and kill its processes', async (t) => {
  const c = await cluster(t);
  const script = 'echo up; sleep 30 & sleep 30';
  for (const name of ['ss-orphan', 'ss-bg', 'ss-fg']) {
    await c.batch.createNamespacedJob({ namespace: c.ns, body: job(name, script) });
    await resume(c, name);
  }
  const pgids = new Map<string, number>();
  for (const name of ['ss-orphan', 'ss-bg', 'ss-fg']) {
    const pod = await podIn(c, name, ['Running']);
    await waitFor('up', async () => (await readLog(c, pod.metadata.name)).includes('up') || undefined);
    pgids.set(name, c.fake.processGroup(pod.metadata.name)!);
    t.ok(groupAlive(pgids.get(name)!), `${name} runs`);
  }

  const res = await c.batch.deleteNamespacedJobWithHttpInfo({ namespace: c.ns, name: 'ss-orphan' });
  t.match(res.headers.warning, /child pods are preserved by default/, 'the server warns, as kube-apiserver does');
  await new Promise((r) => setTimeout(r, 200));
  const orphan = podOf(c, 'ss-orphan');
  t.ok(orphan, 'the pod is left behind');
  t.notOk(orphan.metadata.ownerReferences, 'with its ownerReference removed');
  t.ok(groupAlive(pgids.get('ss-orphan')!), 'and still running');

  await c.batch.deleteNamespacedJob({ namespace: c.ns, name: 'ss-bg', propagationPolicy: 'Background' });
  t.notOk(c.fake.objects('jobs').some((j) => j.metadata.name === 'ss-bg'), 'a Background delete removes the Job at once');
  await waitFor('bg pod gone', () => !podOf(c, 'ss-bg') || undefined);
  t.notOk(groupAlive(pgids.get('ss-bg')!), 'the whole process group was killed');

  await c.batch.deleteNamespacedJob({ namespace: c.ns, name: 'ss-fg', propagationPolicy: 'Foreground' });
  const fg = c.fake.objects('jobs').find((j) => j.metadata.name === 'ss-fg');
  t.ok(fg?.metadata.deletionTimestamp, 'a Foreground delete keeps the Job while its pods go');
  t.same(fg?.metadata.finalizers, ['foregroundDeletion']);
  await waitFor('fg job gone', () => !c.fake.objects('jobs').some((j) => j.metadata.name === 'ss-fg') || undefined);
  t.notOk(podOf(c, 'ss-fg'), 'its pod went first');
  t.notOk(groupAlive(pgids.get('ss-fg')!));

  await c.core.deleteNamespacedPod({ namespace: c.ns, name: orphan.metadata.name, gracePeriodSeconds: 0 });
  await waitFor('orphan killed', () => !groupAlive(pgids.get('ss-orphan')!) || undefined);
  t.pass('gracePeriodSeconds=0 removes the pod and kills its group');
});

t.test('a graceful pod delete sends SIGTERM to the group, waits for it, then removes the pod', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-term', 'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 0.1; done') });
  await resume(c, 'ss-term');
  const pod = await podIn(c, 'ss-term', ['Running']);
  await waitFor('ready', async () => (await readLog(c, pod.metadata.name)).includes('ready') || undefined);
  const follow = readLog(c, pod.metadata.name, { follow: true });
  const res = await c.core.deleteNamespacedPod({ namespace: c.ns, name: pod.metadata.name });
  t.ok(res.metadata?.deletionTimestamp, 'the answer is the pod, marked for deletion');
  t.equal(await follow, 'ready\ngot-term\n', 'the follow ends with the container, after its TERM handler ran');
  await waitFor('pod removed', () => !podOf(c, 'ss-term') || undefined);
  const j = await waitFor('job failed', () => c.fake.objects('jobs')[0]?.status?.conditions?.find((x: any) => x.type === 'Complete' || x.type === 'Failed'));
  t.ok(j, 'the Job recorded the pod end');
});

t.test('pod activeDeadlineSeconds: Failed with reason DeadlineExceeded and the group killed', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-deadline', 'echo up; sleep 30 & sleep 30', { pod: { activeDeadlineSeconds: 2, terminationGracePeriodSeconds: 1 } }) });
  await resume(c, 'ss-deadline');
  const running = await podIn(c, 'ss-deadline', ['Running']);
  await waitFor('up', async () => (await readLog(c, running.metadata.name)).includes('up') || undefined);
  const pgid = c.fake.processGroup(running.metadata.name)!;
  const pod = await podIn(c, 'ss-deadline', ['Failed']);
  t.equal(pod.status.reason, 'DeadlineExceeded');
  t.match(pod.status.containerStatuses[0].state.terminated, { reason: 'Error' });
  t.ok(pod.status.containerStatuses[0].state.terminated.exitCode >= 128, 'killed by a signal');
  t.notOk(groupAlive(pgid), 'no process of the group is left');
});

t.test('Job activeDeadlineSeconds fails the Job with DeadlineExceeded and deletes its pod', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-jobdl', 'sleep 30', { spec: { activeDeadlineSeconds: 1 } }) });
  await resume(c, 'ss-jobdl');
  const j = await waitFor('job deadline', () => c.fake.objects('jobs')[0]?.status?.conditions?.find((x: any) => x.type === 'Failed'));
  t.equal(j.reason, 'DeadlineExceeded');
  await waitFor('pod gone', () => !podOf(c, 'ss-jobdl') || undefined);
});

t.test('ttlSecondsAfterFinished removes the finished Job, its pod and its Secret', async (t) => {
  const c = await cluster(t);
  const created = await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-ttl', 'echo done', { spec: { ttlSecondsAfterFinished: 1 } }) });
  await c.core.createNamespacedSecret({
    namespace: c.ns,
    body: { metadata: { name: 'ss-ttl', ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: 'ss-ttl', uid: created.metadata!.uid! }] }, stringData: { a: 'b' } },
  });
  await resume(c, 'ss-ttl');
  await podIn(c, 'ss-ttl', ['Succeeded']);
  const complete = await waitFor('complete', () => c.fake.objects('jobs')[0]?.status?.conditions?.find((x: any) => x.type === 'Complete'));
  t.equal(complete.status, 'True');
  t.equal(c.fake.objects('secrets').length, 1, 'the Secret is there while the Job is');
  await waitFor('all gone', () => (c.fake.objects('jobs').length + c.fake.objects('pods').length + c.fake.objects('secrets').length === 0) || undefined, 5000);
  t.pass('Job, pod and Secret collected');
});

t.test('pods/log: timestamps, sinceTime, tailLines, follow until the container ends', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-log', 'echo one; echo two >&2; IFS= read -r x; echo three; printf no-newline', { container: { stdin: true, stdinOnce: true } }) });
  await resume(c, 'ss-log');
  const pod = await podIn(c, 'ss-log', ['Running']);
  const name = pod.metadata.name;
  await waitFor('two lines', async () => (await readLog(c, name)).includes('two') || undefined);
  const stamped = await readLog(c, name, { timestamps: true });
  const lines = stamped.trimEnd().split('\n');
  t.equal(lines.length, 2);
  t.match(lines[0], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z one$/);
  const secondTime = lines[1]!.split(' ')[0]!;
  t.equal(await readLog(c, name, { sinceTime: secondTime }), 'two\n', 'sinceTime includes the line at that time and later ones');
  t.equal(await readLog(c, name, { tailLines: 1 }), 'two\n');
  const follow = readLog(c, name, { follow: true });
  const a = await attach(c, name);
  a.stdin.end('go\n');
  t.equal(await follow, 'one\ntwo\nthree\nno-newline\n', 'the follow ends when the container does; a last line without newline gets one, as CRI logs do');
  await a.closed;
  t.equal(a.stdout(), 'three\nno-newline', 'attach passes the bytes as they are');
});

t.test('authentication: no token or a wrong one gets 401 with a Status body', async (t) => {
  const c = await cluster(t);
  const res = await fetch(`${c.fake.url}/api/v1/namespaces/${c.ns}/pods`);
  t.equal(res.status, 401);
  t.match(await res.json(), { kind: 'Status', code: 401, reason: 'Unauthorized' });
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: c.fake.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'wrong' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const err = await kc.makeApiClient(k8s.CoreV1Api).listNamespacedPod({ namespace: c.ns }).then(
    () => undefined,
    (e: k8s.ApiException<unknown>) => e,
  );
  t.equal(err?.code, 401);
  const wsErr = await new k8s.Attach(kc).attach(c.ns, 'x', 'task', new PassThrough(), null, null, false).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(errText(wsErr), /401/, 'the attach upgrade too');
});

t.test('faults: failNext answers the next matching request with a Status of that code, once', async (t) => {
  const c = await cluster(t);
  c.fake.faults.failNext('POST', /\/jobs$/, 500);
  const err = await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-fault', 'true') }).then(
    () => undefined,
    (e: k8s.ApiException<string>) => e,
  );
  t.equal(err?.code, 500);
  t.match(JSON.parse(String(err?.body)), { kind: 'Status', code: 500, reason: 'InternalError' });
  t.equal(c.fake.objects('jobs').length, 0, 'nothing was created');
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-fault', 'true') });
  t.equal(c.fake.objects('jobs').length, 1, 'the retry succeeds');
  c.fake.faults.failNext('GET', /\/pods$/, 503);
  const listErr = await c.core.listNamespacedPod({ namespace: c.ns }).then(
    () => undefined,
    (e: k8s.ApiException<string>) => e,
  );
  t.equal(listErr?.code, 503);
});

t.test('errors as kube-apiserver answers them: 404, 422, 403 for another namespace, 409 on a stale update', async (t) => {
  const c = await cluster(t);
  const codeOf = (p: Promise<unknown>): Promise<number | undefined> => p.then(() => undefined, (e: k8s.ApiException<unknown>) => e.code);
  t.equal(await codeOf(c.core.readNamespacedPod({ namespace: c.ns, name: 'nope' })), 404);
  t.equal(await codeOf(c.batch.createNamespacedJob({ namespace: c.ns, body: job('Upper_Case', 'true') })), 422, 'a name that is not DNS-1123');
  const always = job('ss-always', 'true');
  always.spec!.template.spec!.restartPolicy = 'Always';
  t.equal(await codeOf(c.batch.createNamespacedJob({ namespace: c.ns, body: always })), 422, 'a Job pod must not restart Always');
  t.equal(await codeOf(c.core.listNamespacedPod({ namespace: 'default' })), 403, 'the role covers one namespace');
  const s = await c.core.createNamespacedSecret({ namespace: c.ns, body: { metadata: { name: 'stale' }, stringData: { a: '1' } } });
  await c.core.patchNamespacedSecret({ namespace: c.ns, name: 'stale', body: { stringData: { a: '2' } } }, mergePatch);
  t.equal(
    await codeOf(c.core.replaceNamespacedSecret({ namespace: c.ns, name: 'stale', body: { metadata: { name: 'stale', resourceVersion: s.metadata!.resourceVersion }, data: {} } })),
    409,
    'a replace from an old resourceVersion conflicts',
  );
  const read = await c.core.readNamespacedSecret({ namespace: c.ns, name: 'stale' });
  t.equal(Buffer.from(read.data!.a!, 'base64').toString(), '2', 'stringData is stored as data');
  const jp = await c.core.patchNamespacedSecret({ namespace: c.ns, name: 'stale', body: [{ op: 'add', path: '/metadata/labels', value: { x: 'y' } }] });
  t.same(jp.metadata?.labels, { x: 'y' }, 'the default patch type is a JSON patch');
  await c.core.deleteNamespacedSecret({ namespace: c.ns, name: 'stale' });
  t.equal(await codeOf(c.core.readNamespacedSecret({ namespace: c.ns, name: 'stale' })), 404);
});

t.test('NetworkPolicy: create/get/list/delete; with enforcement, a selected pod reaches only its own loopback', async (t) => {
  const listener: Server = createServer((s) => {
    s.on('error', () => undefined);
    s.end('hello\n');
  });
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => listener.close(() => r())));
  const port = (listener.address() as { port: number }).port;
  const probe = `if (exec 3<>/dev/tcp/127.0.0.1/${port}) 2>/dev/null; then echo reachable; else echo unreachable; fi`;
  const c = await cluster(t, { enforceNetworkPolicy: true });
  const policy = {
    metadata: { name: 'default-deny' },
    spec: { podSelector: { matchLabels: { 'app.kubernetes.io/managed-by': 'sandboxshift' } }, policyTypes: ['Ingress', 'Egress'], ingress: [], egress: [] },
  };
  await c.net.createNamespacedNetworkPolicy({ namespace: c.ns, body: policy });
  t.equal((await c.net.readNamespacedNetworkPolicy({ namespace: c.ns, name: 'default-deny' })).spec?.policyTypes?.length, 2);
  t.equal((await c.net.listNamespacedNetworkPolicy({ namespace: c.ns })).items.length, 1);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-denied', probe, { container: { command: ['/bin/bash', '-c', probe] } }) });
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-free', probe, { labels: { 'app.kubernetes.io/managed-by': 'someone-else' }, container: { command: ['/bin/bash', '-c', probe] } }) });
  await resume(c, 'ss-denied');
  await resume(c, 'ss-free');
  const denied = await podIn(c, 'ss-denied', ['Succeeded', 'Failed']);
  const free = await podIn(c, 'ss-free', ['Succeeded', 'Failed']);
  t.equal(await readLog(c, denied.metadata.name), 'unreachable\n', 'the selected pod has only its own loopback');
  t.equal(await readLog(c, free.metadata.name), 'reachable\n', 'a pod no policy selects shares the host network');
  await c.net.deleteNamespacedNetworkPolicy({ namespace: c.ns, name: 'default-deny' });
  t.equal(c.fake.objects('networkpolicies').length, 0);
});

t.test('runAs overrides the pod user; runAsNonRoot with uid 0 is refused', async (t) => {
  const c = await cluster(t, { runAs: { uid: 4242, gid: 4343 } });
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-runas', 'echo "$(id -u):$(id -g)"') });
  await resume(c, 'ss-runas');
  const pod = await podIn(c, 'ss-runas', ['Succeeded']);
  t.equal(await readLog(c, pod.metadata.name), '4242:4343\n');
  const c2 = await cluster(t);
  await c2.batch.createNamespacedJob({ namespace: c2.ns, body: job('ss-root', 'id -u', { pod: { securityContext: { runAsNonRoot: true, runAsUser: 0 } } }) });
  await resume(c2, 'ss-root');
  const waiting = await waitFor('refused', () => podOf(c2, 'ss-root')?.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CreateContainerConfigError' || undefined);
  t.ok(waiting);
});

t.test('command and args: $(VAR) expands from the container env, $$ is a literal $, unknown references stay', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({
    namespace: c.ns,
    body: job('ss-expand', '', {
      container: {
        env: [{ name: 'GREETING', value: 'hi' }, { name: 'BOTH', value: '$(GREETING)-there' }],
        command: ['/bin/echo'],
        args: ['$(GREETING)', '$$(GREETING)', '$(NOPE)', '$(BOTH)', 'a$$b'],
      },
    }),
  });
  await resume(c, 'ss-expand');
  const pod = await podIn(c, 'ss-expand', ['Succeeded']);
  t.equal(await readLog(c, pod.metadata.name), 'hi $(GREETING) $(NOPE) hi-there a$b\n');
});

t.test('fieldValidation: Strict refuses unknown fields with 400; the default (Warn) drops them with a Warning', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-fields', 'true') });
  const strict = await c.batch
    .patchNamespacedJob({ namespace: c.ns, name: 'ss-fields', fieldValidation: 'Strict', body: { spec: { suspendd: false } } }, mergePatch)
    .then(
      () => undefined,
      (e: k8s.ApiException<string>) => e,
    );
  t.equal(strict?.code, 400);
  t.match(JSON.parse(String(strict?.body)).message, 'strict decoding error: unknown field "spec.suspendd"');
  const warned = await c.batch.patchNamespacedJobWithHttpInfo({ namespace: c.ns, name: 'ss-fields', body: { spec: { suspendd: false } } }, mergePatch);
  t.match(warned.headers.warning, /unknown field \\"spec.suspendd\\"/);
  t.notOk('suspendd' in c.fake.objects('jobs')[0].spec, 'the unknown field is dropped');
  const token = /token: (\S+)/.exec(readFileSync(c.fake.kubeconfigPath, 'utf8'))![1];
  const raw = job('ss-raw', 'true') as any;
  raw.spec.template.spec.securityContext.runAsNonroot = true;
  const res = await fetch(`${c.fake.url}/apis/batch/v1/namespaces/${c.ns}/jobs?fieldValidation=Strict`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(raw),
  });
  t.equal(res.status, 400, 'a typo in a raw create body is refused under Strict');
  t.match((await res.json()).message, 'unknown field "spec.template.spec.securityContext.runAsNonroot"');
  const onFailure = job('ss-onfailure', 'true');
  onFailure.spec!.template.spec!.restartPolicy = 'OnFailure';
  const err = await c.batch.createNamespacedJob({ namespace: c.ns, body: onFailure }).then(
    () => undefined,
    (e: k8s.ApiException<string>) => e,
  );
  t.equal(err?.code, 422, 'podFailurePolicy needs restartPolicy Never');
});

t.test('a container that cannot be set up ends with StartError, exit code 128 and the reason in its message', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-start', 'echo never', { container: { workingDir: '/usr/no-such-dir' } }) });
  await resume(c, 'ss-start');
  const pod = await podIn(c, 'ss-start', ['Failed']);
  t.match(pod.status.containerStatuses[0].state.terminated, { exitCode: 128, reason: 'StartError', message: /Read-only file system/ });
  t.equal(await readLog(c, pod.metadata.name), '', 'the command never ran');
});

t.test('the container ends with its main process: a background child is killed and the pod finishes at once', async (t) => {
  const c = await cluster(t);
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-bgchild', 'sleep 30 & echo main-done') });
  await resume(c, 'ss-bgchild');
  const pod = await podIn(c, 'ss-bgchild', ['Succeeded']);
  const pgid = c.fake.processGroup(pod.metadata.name);
  t.ok(pgid, 'the kubelet knows the group');
  t.notOk(groupAlive(pgid!), 'the background sleep went with the main process');
  t.equal(pod.status.containerStatuses[0].state.terminated.exitCode, 0);
});

t.test('each pod has its own PID namespace: kill -KILL -1 in a pod ends its own processes, not a process of the same uid outside it', async (t) => {
  // A uid no other process on this machine uses: should the namespace be missing, the task's
  // kill -1 reaches only the sentinel below, never another test's sandbox.
  const uid = 64917;
  const c = await cluster(t, { runAs: { uid, gid: uid } });
  const sentinel = spawn('setpriv', ['--reuid', String(uid), '--regid', String(uid), '--clear-groups', 'sleep', '60'], { stdio: 'ignore' });
  t.teardown(() => {
    sentinel.kill('SIGKILL');
  });
  let sentinelEnd: string | null = null;
  sentinel.once('exit', (code, signal) => (sentinelEnd = signal ?? String(code)));
  await waitFor('sentinel running as the uid', () => {
    try {
      return readFileSync(`/proc/${sentinel.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)?.[1] === String(uid) || undefined;
    } catch {
      return undefined;
    }
  });
  await c.batch.createNamespacedJob({ namespace: c.ns, body: job('ss-killall', 'echo "pid=$$$$ uid=$(id -u)"; sleep 30 & kill -KILL -1; wait; echo after-kill') });
  await resume(c, 'ss-killall');
  const pod = await podIn(c, 'ss-killall', ['Succeeded', 'Failed']);
  t.equal(pod.status.phase, 'Succeeded', 'the command itself is not killed (kill -1 spares the caller and PID 1)');
  t.equal(await readLog(c, pod.metadata.name), `pid=1 uid=${uid}\nafter-kill\n`, 'the command is PID 1 of its namespace, and its background sleep was killed (wait returned at once)');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(sentinelEnd, null, 'the process of the same uid outside the pod is alive');
  t.equal(process.kill(sentinel.pid!, 0), true);
});
