import t from 'tap';
import { GATE_SCRIPT } from '../../src/runtime/kubernetes/gate.js';
import { buildJob, buildSecret, literal, PROXY_VARIABLES, type KubernetesJobSettings } from '../../src/runtime/kubernetes/job.js';
import { dnsName, jobName } from '../../src/runtime/kubernetes/names.js';
import type { SandboxRequest } from '../../src/runtime/engine.js';

const settings: KubernetesJobSettings = {
  serverId: 'srv_0123abcd',
  namespace: 'sandboxshift-tasks',
  runtimeClassName: null,
  hostUsers: true,
  ttlSecondsAfterFinished: 900,
  tmpfsMb: 64,
  workspaceMb: 1024,
  graceSeconds: 2,
  startAllowanceSeconds: 300,
  images: { 'sandboxshift/runtime-python:3.11': 'registry.example/sandboxshift/runtime-python@sha256:' + 'a'.repeat(64) },
};

const req: SandboxRequest = {
  image: 'sandboxshift/runtime-python:3.11',
  cpus: 1.5,
  memoryMb: 512,
  pids: 256,
  isolation: 'runc',
  taskId: 'tsk_AbC_12',
  command: 'echo "$HOME" $((1+1))',
  env: { FOO: 'a $(BAR) b', HOME: '/evil', HTTP_PROXY: 'http://evil' },
  secretEnv: { TOKEN: 's3cret' },
  workspaceDir: '/data/ws/w1',
  workspaceReadonly: false,
  stdin: false,
  backstopSeconds: 305,
};

t.test('names: DNS-1123, deterministic, no collisions between ids that differ in case or _', async (t) => {
  const a = jobName('tsk_AbC_12');
  t.equal(a, jobName('tsk_AbC_12'), 'deterministic (a retried create names the same Job)');
  t.match(a, /^ss-[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  t.ok(a.length <= 63);
  t.not(jobName('tsk_abc_12'), a, 'case matters');
  t.not(jobName('tsk-AbC-12'), a, '_ and - differ');
  const long = jobName('x'.repeat(300) + '_Y');
  t.ok(long.length <= 63, `a long id stays within 63 (${long.length})`);
  t.match(long, /^ss-[a-z0-9-]+[a-z0-9]$/);
  t.match(dnsName('ss-', '___'), /^ss-[0-9a-f]{10}$/, 'an id with nothing readable is its hash');
});

t.test('the Job: every field the runtime relies on', async (t) => {
  const job = buildJob({ req, boundary: 'B0UNDARY', proxy: true }, settings);
  const name = jobName(req.taskId);
  t.equal(job.apiVersion, 'batch/v1');
  t.equal(job.kind, 'Job');
  t.equal(job.metadata!.name, name);
  t.equal(job.metadata!.namespace, 'sandboxshift-tasks');
  const labels = { 'app.kubernetes.io/managed-by': 'sandboxshift', 'sandboxshift.io/instance': 'srv_0123abcd', 'sandboxshift.io/task-id': name };
  t.same(job.metadata!.labels, labels);
  t.same(job.metadata!.annotations, { 'sandboxshift.io/task': 'tsk_AbC_12', 'sandboxshift.io/writeback-boundary': 'B0UNDARY' });
  const spec = job.spec!;
  t.equal(spec.suspend, true, 'created suspended');
  t.equal(spec.backoffLimit, 0, 'no retries');
  t.same(spec.podFailurePolicy, { rules: [{ action: 'FailJob', onExitCodes: { operator: 'NotIn', values: [0] } }] }, 'any non-zero exit fails the Job');
  t.equal(spec.ttlSecondsAfterFinished, 900);
  t.equal(spec.activeDeadlineSeconds, 305 + 300 + 300, 'Job backstop: the pod backstop plus the queue allowance');
  t.same(spec.template.metadata!.labels, labels, 'the pod carries the same labels');
  const pod = spec.template.spec!;
  t.equal(pod.restartPolicy, 'Never');
  t.equal(pod.activeDeadlineSeconds, 305 + 300, 'pod backstop: the engine backstop plus the start allowance');
  t.equal(pod.terminationGracePeriodSeconds, 2);
  t.equal(pod.automountServiceAccountToken, false);
  t.equal(pod.enableServiceLinks, false);
  t.notOk('runtimeClassName' in pod, 'no RuntimeClass unless configured');
  t.notOk('hostUsers' in pod, 'host users unless configured');
  t.same(pod.securityContext, { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } });
  t.equal(pod.containers.length, 1);
  const c = pod.containers[0]!;
  t.equal(c.name, 'task');
  t.equal(c.image, settings.images[req.image], 'the image mapping names what the cluster pulls');
  t.equal(c.workingDir, '/workspace');
  t.same(c.command, ['/bin/sh', '-c', literal(GATE_SCRIPT), 'sandboxshift-gate', 'echo "$$HOME" $$((1+1))'], 'the gate, then the command, every $ doubled');
  t.equal(c.stdin, true);
  t.equal(c.stdinOnce, true);
  t.equal(c.tty, false);
  t.same(c.securityContext, {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    privileged: false,
    runAsNonRoot: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  });
  t.same(c.resources, {
    requests: { cpu: '1500m', memory: '512Mi', 'ephemeral-storage': '1024Mi' },
    limits: { cpu: '1500m', memory: '512Mi', 'ephemeral-storage': '1024Mi' },
  });
  t.same(c.volumeMounts, [
    { name: 'workspace', mountPath: '/workspace' },
    { name: 'tmp', mountPath: '/tmp' },
  ]);
  t.same(pod.volumes, [
    { name: 'workspace', emptyDir: { sizeLimit: '1024Mi' } },
    { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: '64Mi' } },
  ]);
  const env = c.env!;
  t.same(env.find((e) => e.name === 'FOO'), { name: 'FOO', value: 'a $$(BAR) b' }, 'env values are not expanded by Kubernetes');
  t.same(env.filter((e) => e.name === 'HOME'), [{ name: 'HOME', value: '/workspace/.home' }], "HOME is the server's");
  t.same(env.find((e) => e.name === 'TOKEN'), { name: 'TOKEN', valueFrom: { secretKeyRef: { name, key: 'env.TOKEN' } } }, 'a secret comes from the Secret, its value is not in the Job');
  for (const k of PROXY_VARIABLES) t.same(env.filter((e) => e.name === k), [{ name: k, valueFrom: { secretKeyRef: { name, key: 'proxyUrl' } } }], `${k} from the Secret, the request's dropped`);
  t.notMatch(JSON.stringify(job), /s3cret/, 'no secret value anywhere in the Job');
});

t.test('install options: RuntimeClass, user namespaces; a read-only workspace has no boundary', async (t) => {
  const job = buildJob({ req: { ...req, env: {}, secretEnv: {} }, boundary: null, proxy: false }, { ...settings, runtimeClassName: 'gvisor', hostUsers: false, images: {} });
  const pod = job.spec!.template.spec!;
  t.equal(pod.runtimeClassName, 'gvisor');
  t.equal(pod.hostUsers, false);
  t.equal(pod.containers[0]!.image, req.image, 'an unmapped image is pulled by its own name');
  t.same(job.metadata!.annotations, { 'sandboxshift.io/task': 'tsk_AbC_12' });
  t.same(pod.containers[0]!.env, [{ name: 'HOME', value: '/workspace/.home' }], 'no proxy variables without an allowlist');
});

t.test('the Secret: owned by its Job, values base64, none without secrets or proxy', async (t) => {
  const owner = { name: jobName(req.taskId), uid: 'uid-1' };
  const s = buildSecret(req, 'http://u:p@proxy:3128', owner, settings)!;
  t.equal(s.metadata!.name, owner.name);
  t.same(s.metadata!.ownerReferences, [{ apiVersion: 'batch/v1', kind: 'Job', name: owner.name, uid: 'uid-1', controller: true, blockOwnerDeletion: true }]);
  t.same(s.data, { 'env.TOKEN': Buffer.from('s3cret').toString('base64'), proxyUrl: Buffer.from('http://u:p@proxy:3128').toString('base64') });
  t.equal(buildSecret({ ...req, secretEnv: {} }, null, owner, settings), null);
});
