import type { V1Container, V1PodSpec } from '@kubernetes/client-node';

/**
 * A local check of the Pod Security Standards `restricted` profile (baseline included), as the
 * Pod Security admission of Kubernetes 1.25+ applies it to a pod spec. Returns one line per
 * violation, empty when the pod passes.
 */
export function restrictedViolations(spec: V1PodSpec): string[] {
  const out: string[] = [];
  const containers: (V1Container & { kind: string })[] = [
    ...(spec.initContainers ?? []).map((c) => ({ ...c, kind: 'initContainer' })),
    ...(spec.containers ?? []).map((c) => ({ ...c, kind: 'container' })),
    ...((spec.ephemeralContainers ?? []) as V1Container[]).map((c) => ({ ...c, kind: 'ephemeralContainer' })),
  ];
  const pod = spec.securityContext ?? {};
  // Baseline: host namespaces, privileged, host ports, hostPath, /proc, AppArmor, SELinux, sysctls.
  if (spec.hostNetwork) out.push('baseline: hostNetwork must not be true');
  if (spec.hostPID) out.push('baseline: hostPID must not be true');
  if (spec.hostIPC) out.push('baseline: hostIPC must not be true');
  if (pod.windowsOptions?.hostProcess) out.push('baseline: hostProcess must not be true');
  const safeSysctls = new Set(['kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start', 'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports', 'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes']);
  for (const s of pod.sysctls ?? []) if (!safeSysctls.has(s.name)) out.push(`baseline: sysctl ${s.name} is not in the safe set`);
  checkSeLinux(pod.seLinuxOptions, 'pod', out);
  if (pod.appArmorProfile?.type === 'Unconfined') out.push('baseline: pod appArmorProfile must not be Unconfined');
  const allowedVolumes = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
  for (const v of spec.volumes ?? []) {
    const types = Object.keys(v).filter((k) => k !== 'name' && (v as Record<string, unknown>)[k] !== undefined);
    if ((v as { hostPath?: unknown }).hostPath) out.push(`baseline: volume ${v.name} is a hostPath`);
    for (const type of types) if (!allowedVolumes.includes(type)) out.push(`restricted: volume ${v.name} has type ${type}`);
  }
  // Restricted, pod level (each may instead be set on every container).
  const podNonRoot = pod.runAsNonRoot === true;
  const podSeccomp = pod.seccompProfile?.type;
  if (podSeccomp === 'Unconfined') out.push('baseline: pod seccompProfile must not be Unconfined');
  if (pod.runAsUser === 0) out.push('restricted: pod runAsUser must not be 0');
  for (const c of containers) {
    const sc = c.securityContext ?? {};
    const name = `${c.kind} ${c.name}`;
    if (sc.privileged) out.push(`baseline: ${name} must not be privileged`);
    if (sc.windowsOptions?.hostProcess) out.push(`baseline: ${name} hostProcess must not be true`);
    for (const p of c.ports ?? []) if (p.hostPort) out.push(`baseline: ${name} uses hostPort ${p.hostPort}`);
    if (sc.procMount && sc.procMount !== 'Default') out.push(`baseline: ${name} procMount must be Default`);
    if (sc.appArmorProfile?.type === 'Unconfined') out.push(`baseline: ${name} appArmorProfile must not be Unconfined`);
    checkSeLinux(sc.seLinuxOptions, name, out);
    if (sc.allowPrivilegeEscalation !== false) out.push(`restricted: ${name} must set allowPrivilegeEscalation: false`);
    const nonRoot = sc.runAsNonRoot ?? (podNonRoot ? true : undefined);
    if (nonRoot !== true) out.push(`restricted: ${name} must run with runAsNonRoot: true (pod or container)`);
    if (sc.runAsUser === 0) out.push(`restricted: ${name} runAsUser must not be 0`);
    const seccomp = sc.seccompProfile?.type ?? podSeccomp;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') out.push(`restricted: ${name} must have seccompProfile RuntimeDefault or Localhost (pod or container)`);
    const drop = sc.capabilities?.drop ?? [];
    if (!drop.includes('ALL')) out.push(`restricted: ${name} must drop ALL capabilities`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') out.push(`restricted: ${name} adds capability ${cap}`);
  }
  return out;
}

function checkSeLinux(o: { type?: string; user?: string; role?: string } | undefined, where: string, out: string[]): void {
  if (!o) return;
  if (o.type && !['container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t'].includes(o.type)) out.push(`baseline: ${where} seLinuxOptions.type ${o.type} is not allowed`);
  if (o.user) out.push(`baseline: ${where} seLinuxOptions.user must not be set`);
  if (o.role) out.push(`baseline: ${where} seLinuxOptions.role must not be set`);
}

/** SandboxShift's own hardening on top of `restricted` (the Podman path's, mapped to a pod). */
export function hardeningViolations(spec: V1PodSpec): string[] {
  const out: string[] = [];
  if (spec.automountServiceAccountToken !== false) out.push('automountServiceAccountToken must be false');
  if (spec.enableServiceLinks !== false) out.push('enableServiceLinks must be false');
  for (const c of spec.containers) {
    if (c.securityContext?.readOnlyRootFilesystem !== true) out.push(`container ${c.name} must have a read-only root filesystem`);
  }
  for (const v of spec.volumes ?? []) if (!v.emptyDir) out.push(`volume ${v.name} must be an emptyDir`);
  return out;
}
