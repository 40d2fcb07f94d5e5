import t from 'tap';
import type { V1PodSpec } from '@kubernetes/client-node';
import { canaryCommand } from '../../src/runtime/kubernetes/canary.js';
import { buildJob, type KubernetesJobSettings } from '../../src/runtime/kubernetes/job.js';
import type { SandboxRequest } from '../../src/runtime/engine.js';
import { hardeningViolations, restrictedViolations } from '../helpers/restricted-profile.js';

const settings: KubernetesJobSettings = {
  serverId: 'srv_1',
  namespace: 'sandboxshift-tasks',
  runtimeClassName: null,
  hostUsers: true,
  ttlSecondsAfterFinished: 900,
  tmpfsMb: 64,
  workspaceMb: 1024,
  graceSeconds: 2,
  startAllowanceSeconds: 300,
  images: {},
};
const base: SandboxRequest = {
  image: 'sandboxshift/runtime-node:20',
  cpus: 1,
  memoryMb: 256,
  pids: 64,
  isolation: 'runc',
  taskId: 'tsk_1',
  command: 'true',
  env: {},
  workspaceDir: '/w',
  workspaceReadonly: false,
  stdin: false,
  backstopSeconds: 60,
};

/** Every kind of pod the engine generates. */
const variants: [string, V1PodSpec][] = [
  ['plain task', buildJob({ req: base, boundary: 'b', proxy: false }, settings).spec!.template.spec!],
  ['allowlist, secrets, stdin', buildJob({ req: { ...base, stdin: true, secretEnv: { A: 'x' }, env: { B: 'y' } }, boundary: 'b', proxy: true }, settings).spec!.template.spec!],
  ['read-only workspace', buildJob({ req: { ...base, workspaceReadonly: true }, boundary: null, proxy: false }, settings).spec!.template.spec!],
  ['gVisor RuntimeClass and user namespaces', buildJob({ req: base, boundary: 'b', proxy: false }, { ...settings, runtimeClassName: 'gvisor', hostUsers: false }).spec!.template.spec!],
  ['the NetworkPolicy canary', buildJob({ req: { ...base, command: canaryCommand('10.0.0.1:443'), workspaceReadonly: true }, boundary: null, proxy: false }, settings).spec!.template.spec!],
];

t.test('every generated pod passes the restricted profile and the hardening checks', async (t) => {
  for (const [name, spec] of variants) {
    t.same(restrictedViolations(spec), [], `${name}: restricted`);
    t.same(hardeningViolations(spec), [], `${name}: hardening`);
  }
});

const clone = (): V1PodSpec => structuredClone(variants[0]![1]);
const weakened: [string, (s: V1PodSpec) => void, RegExp][] = [
  ['privilege escalation allowed', (s) => (s.containers[0]!.securityContext!.allowPrivilegeEscalation = true), /allowPrivilegeEscalation/],
  ['allowPrivilegeEscalation unset', (s) => delete s.containers[0]!.securityContext!.allowPrivilegeEscalation, /allowPrivilegeEscalation/],
  ['runAsNonRoot unset everywhere', (s) => {
    delete s.securityContext!.runAsNonRoot;
    delete s.containers[0]!.securityContext!.runAsNonRoot;
  }, /runAsNonRoot/],
  ['root user', (s) => (s.containers[0]!.securityContext!.runAsUser = 0), /runAsUser must not be 0/],
  ['no seccomp profile', (s) => {
    delete s.securityContext!.seccompProfile;
    delete s.containers[0]!.securityContext!.seccompProfile;
  }, /seccompProfile/],
  ['seccomp Unconfined', (s) => (s.containers[0]!.securityContext!.seccompProfile = { type: 'Unconfined' }), /seccompProfile/],
  ['capabilities kept', (s) => (s.containers[0]!.securityContext!.capabilities = { drop: ['NET_RAW'] }), /drop ALL/],
  ['capability added', (s) => (s.containers[0]!.securityContext!.capabilities = { drop: ['ALL'], add: ['SYS_ADMIN'] }), /adds capability SYS_ADMIN/],
  ['privileged', (s) => (s.containers[0]!.securityContext!.privileged = true), /privileged/],
  ['hostPath volume', (s) => s.volumes!.push({ name: 'host', hostPath: { path: '/' } }), /hostPath/],
  ['host network', (s) => (s.hostNetwork = true), /hostNetwork/],
  ['host PID', (s) => (s.hostPID = true), /hostPID/],
  ['host port', (s) => (s.containers[0]!.ports = [{ containerPort: 80, hostPort: 80 }]), /hostPort/],
  ['unsafe sysctl', (s) => (s.securityContext!.sysctls = [{ name: 'kernel.msgmax', value: '1' }]), /sysctl/],
  ['unmasked /proc', (s) => (s.containers[0]!.securityContext!.procMount = 'Unmasked'), /procMount/],
];

t.test('a deliberately weakened pod fails, naming the rule', async (t) => {
  for (const [name, weaken, rule] of weakened) {
    const spec = clone();
    weaken(spec);
    const v = restrictedViolations(spec);
    t.ok(v.length > 0, `${name}: refused`);
    t.match(v.join('\n'), rule, `${name}: ${v[0] ?? ''}`);
  }
  const spec = clone();
  spec.automountServiceAccountToken = true;
  spec.containers[0]!.securityContext!.readOnlyRootFilesystem = false;
  t.same(hardeningViolations(spec), ['automountServiceAccountToken must be false', 'container task must have a read-only root filesystem'], 'the hardening on top of restricted');
});
