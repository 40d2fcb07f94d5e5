import type { SandboxRequest } from './engine.js';
import { taskLabels } from './labels.js';

/** Server-wide settings that shape every task container. */
export interface SandboxSettings {
  serverId: string;
  seccompProfilePath: string;
  tmpfsMb: number;
  nofile: number;
  nproc: number;
  extraLabels?: Readonly<Record<string, string>>;
}

export const CONTAINER_USER = '65532:65532';
export const WORKSPACE_MOUNT = '/workspace';
export const TASK_HOME = '/workspace/.home';

/**
 * The Docker-compatible create body for one task container. Pure: every security setting lives
 * here and a unit test pins each field. Only validated, bounded values reach it.
 */
export function buildContainerSpec(req: SandboxRequest, s: SandboxSettings) {
  const memoryBytes = req.memoryMb * 1024 * 1024;
  // `U` chowns the tmpfs to the container user; mode=1777 is ignored when the image has the dir.
  const tmpfs = `rw,nosuid,nodev,size=${s.tmpfsMb}m,U`;
  return {
    Image: req.image,
    // The command always runs as `/bin/sh -c <command>`, whatever entrypoint the image declares.
    Entrypoint: ['/bin/sh', '-c'],
    Cmd: [req.command],
    User: CONTAINER_USER,
    WorkingDir: WORKSPACE_MOUNT,
    Env: [...Object.entries(req.env).map(([k, v]) => `${k}=${v}`), `HOME=${TASK_HOME}`],
    Labels: taskLabels(s.serverId, req.taskId, s.extraLabels),
    Hostname: 'sandbox',
    Tty: false,
    AttachStdin: req.stdin,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: req.stdin,
    StdinOnce: false,
    NetworkDisabled: true,
    HostConfig: {
      Binds: [`${req.workspaceDir}:${WORKSPACE_MOUNT}:${req.workspaceReadonly ? 'ro' : 'rw'},nosuid,nodev`],
      ReadonlyRootfs: true,
      Tmpfs: { '/tmp': tmpfs, '/run': tmpfs, '/var/tmp': tmpfs },
      CapDrop: ['ALL'],
      CapAdd: [],
      Privileged: false,
      SecurityOpt: ['no-new-privileges', `seccomp=${s.seccompProfilePath}`],
      // An init as PID 1 forwards signals to the whole tree; killing it ends the PID namespace,
      // which takes `setsid` children and SIGTERM-trapping processes with it.
      Init: true,
      Memory: memoryBytes,
      MemorySwap: memoryBytes,
      NanoCpus: Math.round(req.cpus * 1e9),
      PidsLimit: req.pids,
      // RLIMIT_NPROC counts per host UID across every task (all run as 65532): keep it far above
      // the pids cgroup so that one task's fork bomb never starves another.
      Ulimits: [
        { Name: 'nofile', Soft: s.nofile, Hard: s.nofile },
        { Name: 'nproc', Soft: s.nproc, Hard: s.nproc },
      ],
      NetworkMode: 'none',
      // The server records output itself; the engine's copy would be uncapped and slower.
      LogConfig: { Type: 'none', Config: {} },
      AutoRemove: false,
      RestartPolicy: { Name: 'no' },
    },
  };
}

export type ContainerSpec = ReturnType<typeof buildContainerSpec>;
