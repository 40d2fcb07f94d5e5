import type { ContainerSpec } from './spec.js';

/**
 * The task container's create body for Podman's own API (`POST /libpod/containers/create`, a
 * SpecGenerator), translated from the Docker-compatible body buildContainerSpec pins field by
 * field. The libpod API is used because only it takes `timeout`: conmon stops the container that
 * many seconds after it started, whether or not a server is running (the engine-side backstop to
 * the server's own deadline). Any field this translation does not know is an error, so that a
 * setting added to the compatible body can never be dropped silently.
 */
export function toSpecGenerator(spec: ContainerSpec, timeoutSeconds: number): Record<string, unknown> {
  const known = new Set([
    'Image', 'Entrypoint', 'Cmd', 'User', 'WorkingDir', 'Env', 'Labels', 'Hostname', 'Tty', 'AttachStdin', 'AttachStdout',
    'AttachStderr', 'OpenStdin', 'StdinOnce', 'NetworkDisabled', 'HostConfig', 'IdMappings',
  ]);
  const knownHost = new Set([
    'Binds', 'ReadonlyRootfs', 'Tmpfs', 'CapDrop', 'CapAdd', 'Privileged', 'SecurityOpt', 'Init', 'Memory', 'MemorySwap',
    'NanoCpus', 'PidsLimit', 'Ulimits', 'NetworkMode', 'IpcMode', 'LogConfig', 'AutoRemove', 'RestartPolicy',
  ]);
  for (const k of Object.keys(spec)) if (!known.has(k)) throw new Error(`toSpecGenerator: unknown field ${k}`);
  const h = spec.HostConfig;
  for (const k of Object.keys(h)) if (!knownHost.has(k)) throw new Error(`toSpecGenerator: unknown field HostConfig.${k}`);
  if (spec.Tty || !spec.NetworkDisabled || h.NetworkMode !== 'none' || h.IpcMode !== 'private' || h.Privileged || h.AutoRemove || h.RestartPolicy.Name !== 'no') {
    throw new Error('toSpecGenerator: the body is not the hardened task container');
  }
  const env: Record<string, string> = {};
  for (const e of spec.Env) {
    const i = e.indexOf('=');
    env[e.slice(0, i)] = e.slice(i + 1);
  }
  const mounts: Record<string, unknown>[] = h.Binds.map((b) => {
    const [source, destination, opts] = b.split(':') as [string, string, string];
    return { type: 'bind', source, destination, options: ['rbind', ...opts.split(',')] };
  });
  for (const [destination, opts] of Object.entries(h.Tmpfs)) {
    mounts.push({ type: 'tmpfs', source: 'tmpfs', destination, options: opts.split(',') });
  }
  let noNewPrivileges = false;
  let seccomp: string | undefined;
  for (const o of h.SecurityOpt) {
    if (o === 'no-new-privileges') noNewPrivileges = true;
    else if (o.startsWith('seccomp=')) seccomp = o.slice('seccomp='.length);
    else throw new Error(`toSpecGenerator: unknown security option ${o}`);
  }
  if (!noNewPrivileges || !seccomp) throw new Error('toSpecGenerator: no-new-privileges and a seccomp profile are required');
  const period = 100_000;
  const ids = 'IdMappings' in spec ? spec.IdMappings : undefined;
  const idMap = (m: { containerId: number; hostId: number; size: number }) => ({ container_id: m.containerId, host_id: m.hostId, size: m.size });
  const log = h.LogConfig as { Type: string; Config: Record<string, string> };
  return {
    image: spec.Image,
    entrypoint: spec.Entrypoint,
    command: spec.Cmd,
    user: spec.User,
    work_dir: spec.WorkingDir,
    env,
    labels: spec.Labels,
    hostname: spec.Hostname,
    terminal: false,
    stdin: spec.OpenStdin,
    netns: { nsmode: 'none' },
    ipcns: { nsmode: 'private' },
    ...(ids
      ? {
          userns: { nsmode: 'private' },
          idmappings: { HostUIDMapping: false, HostGIDMapping: false, UIDMap: ids.UIDMap.map(idMap), GIDMap: ids.GIDMap.map(idMap) },
        }
      : {}),
    mounts,
    read_only_filesystem: h.ReadonlyRootfs,
    cap_drop: h.CapDrop,
    cap_add: h.CapAdd,
    privileged: false,
    no_new_privileges: true,
    seccomp_profile_path: seccomp,
    init: h.Init,
    resource_limits: {
      memory: { limit: h.Memory, swap: h.MemorySwap },
      cpu: { quota: Math.round((h.NanoCpus / 1e9) * period), period },
      pids: { limit: h.PidsLimit },
    },
    r_limits: h.Ulimits.map((u) => ({ type: u.Name, soft: u.Soft, hard: u.Hard })),
    log_configuration: {
      driver: log.Type,
      ...(log.Config['max-size'] ? { size: Number(log.Config['max-size']) } : {}),
    },
    restart_policy: 'no',
    remove: false,
    timeout: timeoutSeconds,
  };
}
