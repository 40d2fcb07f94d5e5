// What the kubelet resolves before it starts a container: environment (values, secretKeyRef,
// fieldRef, envFrom, `$(VAR)` expansion), the user and groups, and the volumes. A failure here
// leaves the container waiting with reason CreateContainerConfigError, as on a real node.
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MountSpec } from './launcher.js';
import type { Store } from './store.js';

export class ConfigError extends Error {}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export function parseQuantity(q: unknown): number | undefined {
  if (q === undefined || q === null) return undefined;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$/.exec(String(q));
  if (!m) return undefined;
  const mult: Record<string, number> = {
    Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
    k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, m: 1e-3,
  };
  return Math.ceil(Number(m[1]) * (m[2] ? mult[m[2]]! : 1));
}

/** `$(VAR)` references expand to earlier variables; `$$` is a literal `$`; unknown ones stay as written. */
export function expand(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name: string | undefined) => {
    if (name === undefined) return '$';
    return Object.prototype.hasOwnProperty.call(env, name) ? env[name]! : all;
  });
}

function secretValue(store: Store, name: string, key: string, optional: boolean): string | undefined {
  const secret = store.get('secrets', name);
  if (!secret) {
    if (optional) return undefined;
    throw new ConfigError(`secret "${name}" not found`);
  }
  const data = secret.data?.[key];
  if (data === undefined) {
    if (optional) return undefined;
    throw new ConfigError(`couldn't find key ${key} in Secret ${store.namespace}/${name}`);
  }
  return Buffer.from(data, 'base64').toString('utf8');
}

function fieldValue(pod: any, path: string): string {
  const label = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (label) return pod.metadata[label[1]!]?.[label[2]!] ?? '';
  const fields: Record<string, () => string | undefined> = {
    'metadata.name': () => pod.metadata.name,
    'metadata.namespace': () => pod.metadata.namespace,
    'metadata.uid': () => pod.metadata.uid,
    'spec.nodeName': () => pod.spec.nodeName,
    'spec.serviceAccountName': () => pod.spec.serviceAccountName,
    'status.podIP': () => pod.status?.podIP,
    'status.hostIP': () => pod.status?.hostIP,
  };
  const get = fields[path];
  if (!get) throw new ConfigError(`unsupported fieldRef ${path}`);
  return get() ?? '';
}

export function buildEnv(store: Store, pod: any, container: any, api: { host: string; port: number }): Record<string, string> {
  const env: Record<string, string> = {
    PATH: DEFAULT_PATH,
    HOSTNAME: pod.metadata.name,
    KUBERNETES_SERVICE_HOST: api.host,
    KUBERNETES_SERVICE_PORT: String(api.port),
  };
  for (const from of container.envFrom ?? []) {
    const prefix = from.prefix ?? '';
    if (from.secretRef) {
      const secret = store.get('secrets', from.secretRef.name);
      if (!secret) {
        if (from.secretRef.optional) continue;
        throw new ConfigError(`secret "${from.secretRef.name}" not found`);
      }
      for (const [k, v] of Object.entries(secret.data ?? {})) env[prefix + k] = Buffer.from(String(v), 'base64').toString('utf8');
    } else if (from.configMapRef && !from.configMapRef.optional) {
      throw new ConfigError(`configmap "${from.configMapRef.name}" not found`);
    }
  }
  for (const e of container.env ?? []) {
    if (e.valueFrom?.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef;
      const value = secretValue(store, ref.name, ref.key, ref.optional === true);
      if (value !== undefined) env[e.name] = value;
    } else if (e.valueFrom?.fieldRef) {
      env[e.name] = fieldValue(pod, e.valueFrom.fieldRef.fieldPath);
    } else if (e.valueFrom?.configMapKeyRef) {
      if (!e.valueFrom.configMapKeyRef.optional) throw new ConfigError(`configmap "${e.valueFrom.configMapKeyRef.name}" not found`);
    } else if (e.valueFrom) {
      env[e.name] = '';
    } else {
      env[e.name] = expand(String(e.value ?? ''), env);
    }
  }
  env.HOME ??= '/';
  return env;
}

export interface Identity {
  uid: number;
  gid: number;
  groups: number[];
  fsGroup: number | undefined;
}

export function identity(pod: any, container: any, runAs: { uid: number; gid: number } | undefined): Identity {
  const psc = pod.spec.securityContext ?? {};
  const csc = container.securityContext ?? {};
  const uid = runAs?.uid ?? csc.runAsUser ?? psc.runAsUser ?? 65532;
  const gid = runAs?.gid ?? csc.runAsGroup ?? psc.runAsGroup ?? 65532;
  const nonRoot = csc.runAsNonRoot ?? psc.runAsNonRoot;
  if (nonRoot === true && uid === 0) {
    throw new ConfigError(`container has runAsNonRoot and image will run as root (pod: "${pod.metadata.name}_${pod.metadata.namespace}(${pod.metadata.uid})", container: ${container.name})`);
  }
  const fsGroup: number | undefined = psc.fsGroup;
  const groups = [...new Set([...(fsGroup !== undefined ? [fsGroup] : []), ...(psc.supplementalGroups ?? [])])];
  return { uid, gid, groups, fsGroup };
}

/** Creates the pod's volumes under `podDir` and returns the mounts of the container's volumeMounts. */
export function prepareVolumes(store: Store, pod: any, container: any, podDir: string, fsGroup: number | undefined): MountSpec[] {
  const volumes = new Map<string, any>();
  for (const v of pod.spec.volumes ?? []) volumes.set(v.name, v);
  const mounts: MountSpec[] = [];
  const gid = fsGroup ?? 0;
  const mode = fsGroup !== undefined ? 0o2777 : 0o777;
  for (const vm of container.volumeMounts ?? []) {
    const v = volumes.get(vm.name);
    if (!v) throw new ConfigError(`volume "${vm.name}" not found in pod spec`);
    const readOnly = vm.readOnly === true;
    if (v.emptyDir && v.emptyDir.medium === 'Memory') {
      const size = parseQuantity(v.emptyDir.sizeLimit);
      const opts = [`mode=${mode.toString(8)}`, `gid=${gid}`, 'nosuid', 'nodev', ...(size ? [`size=${size}`] : [])];
      mounts.push({ type: 'tmpfs', source: opts.join(','), target: vm.mountPath, readOnly });
      continue;
    }
    const dir = join(podDir, 'volumes', v.name);
    mkdirSync(dir, { recursive: true });
    if (v.emptyDir) {
      chownSync(dir, 0, gid);
      chmodSync(dir, mode);
    } else if (v.secret) {
      const secret = store.get('secrets', v.secret.secretName);
      if (!secret) {
        if (!v.secret.optional) throw new ConfigError(`secret "${v.secret.secretName}" not found`);
      } else {
        const fileMode = v.secret.defaultMode ?? 0o644;
        const items: Array<{ key: string; path: string }> = v.secret.items ?? Object.keys(secret.data ?? {}).map((k) => ({ key: k, path: k }));
        for (const item of items) {
          const file = join(dir, item.path);
          writeFileSync(file, Buffer.from(secret.data?.[item.key] ?? '', 'base64'));
          chownSync(file, 0, gid);
          chmodSync(file, fileMode);
        }
      }
    } else {
      throw new ConfigError(`the fake kubelet does not support the volume type of "${v.name}"`);
    }
    let source = dir;
    if (vm.subPath) {
      source = join(dir, vm.subPath);
      mkdirSync(source, { recursive: true });
    }
    mounts.push({ type: 'bind', source, target: vm.mountPath, readOnly: readOnly || v.secret !== undefined });
  }
  return mounts;
}
