import { proxyEnv } from '../egress/env.js';
import { caEnv, TASK_CA_PATH } from '../trust/ca-bundle.js';
import type { PoolSlot, SandboxRequest, SandboxShape } from './engine.js';
import { idMappingFor } from './host-uids.js';
import { LABEL_HOST_UID, LABEL_SLOT, LABEL_STDIN, taskLabels } from './labels.js';
import { SECRETS_FILE, SECRETS_WRAPPER } from './secret-file.js';
import { STDIN_DIR, STDIN_FIFO } from './stdin-fifo.js';

/** Server-wide settings that shape every task container. */
export interface SandboxSettings {
  serverId: string;
  seccompProfilePath: string;
  /** Host path of the /etc/hosts every task gets (localhost and the sandbox's name only). */
  hostsFilePath: string;
  tmpfsMb: number;
  nofile: number;
  nproc: number;
  /**
   * RLIMIT_SIGPENDING of a task with a host UID of its own (see taskSigpending), or null to leave
   * the engine's.
   */
  sigpending?: number | null;
  /** Bound of the engine's own copy of a container's output (its k8s-file log), in bytes. */
  logMaxBytes: number;
  extraLabels?: Readonly<Record<string, string>>;
  /** Host path of the CA bundle mounted at TASK_CA_PATH (tasks.caBundle), or null for none. */
  caBundlePath?: string | null;
  /** Host tmpfs directory for the secrets files of this server's tasks (src/runtime/secret-file.ts). */
  secretsDir?: string | null;
  /** Host directory for the stdin pipes of this server's tasks (src/runtime/stdin-fifo.ts). */
  stdinDir?: string | null;
}

export const CONTAINER_USER = '65532:65532';
export const WORKSPACE_MOUNT = '/workspace';
export const TASK_HOME = '/workspace/.home';
/**
 * Where a task with an allowlist finds the egress proxy's socket: outside /workspace, inside the
 * /run tmpfs (runc creates the mount point there; the bind mount itself is read-only). The
 * task's socket directory is mounted, not the socket file: a socket the server listens on again
 * after a restart is a new inode, which a bind mount of the old file would not show.
 */
export const SANDBOX_HOSTNAME = 'sandbox';
export const EGRESS_DIR = '/run/sandboxshift/egress';
export const EGRESS_SOCKET_NAME = 'egress.sock';
export const EGRESS_SOCKET = `${EGRESS_DIR}/${EGRESS_SOCKET_NAME}`;

/**
 * Under gVisor the pids cgroup counts the sandbox's host threads, not the task's processes: runsc
 * (ptrace platform) starts with about 48 and adds about 8 per task process. The limit becomes
 * this base plus this many per allowed process, so that `pids` still bounds what the task can
 * start; a task that goes past it has its whole sandbox ended instead of seeing fork fail.
 */
export const GVISOR_PIDS_BASE = 64;
export const GVISOR_PIDS_PER_PROCESS = 10;

/** The pids cgroup limit of a container allowed `pids` processes. */
export function pidsLimit(pids: number, isolation: SandboxRequest['isolation']): number {
  return isolation === 'gvisor' ? GVISOR_PIDS_BASE + GVISOR_PIDS_PER_PROCESS * pids : pids;
}

/**
 * The Docker-compatible create body for one task container. Pure: every security setting lives
 * here and a unit test pins each field. Only validated, bounded values reach it. `secretsFile` is
 * the host path of the task's secrets file (mounted read-only and sourced by a wrapper before the
 * command), or null when it has none. `stdinDir` is the host directory of the task's stdin pipe
 * (mounted read-only; the relay `req.stdinRelay` reads it and feeds the command), or null: then
 * a task with stdin gets it through the engine's attach.
 */
export function buildContainerSpec(req: SandboxRequest, s: SandboxSettings, secretsFile: string | null = null, stdinDir: string | null = null) {
  const memoryBytes = req.memoryMb * 1024 * 1024;
  // `U` chowns the tmpfs to the container user; mode=1777 is ignored when the image has the dir.
  const tmpfs = `rw,nosuid,nodev,size=${s.tmpfsMb}m,U`;
  // Egress: the relay binds 127.0.0.1:PORT, then execs `/bin/sh -c <command>`; the network stays
  // `none`, the proxy is reached only through the bind-mounted socket. Proxy and CA variables
  // win over the request's env.
  const egress = req.egress;
  const forced = { ...(egress ? proxyEnv(egress.port) : {}), ...(s.caBundlePath ? caEnv() : {}) };
  const userEnv = Object.entries(req.env).filter(([k]) => !(k in forced));
  const binds = [`${req.workspaceDir}:${WORKSPACE_MOUNT}:${req.workspaceReadonly ? 'ro' : 'rw'},nosuid,nodev`];
  // Podman writes no /etc/hosts of its own when one is mounted: the task never sees
  // host.containers.internal, the host's address or the host's names.
  binds.push(`${s.hostsFilePath}:/etc/hosts:ro,nosuid,nodev`);
  if (egress) binds.push(`${egress.socketDir}:${EGRESS_DIR}:ro,nosuid,nodev,noexec`);
  if (s.caBundlePath) binds.push(`${s.caBundlePath}:${TASK_CA_PATH}:ro,nosuid,nodev`);
  if (secretsFile) binds.push(`${secretsFile}:${SECRETS_FILE}:ro,nosuid,nodev,noexec`);
  const fifo = req.stdin && stdinDir !== null && req.stdinRelay !== undefined ? { dir: stdinDir, relay: req.stdinRelay } : null;
  if (fifo) binds.push(`${fifo.dir}:${STDIN_DIR}:${req.isolation === 'gvisor' ? 'rw' : 'ro'},nosuid,nodev,noexec`);
  // Stdin through the pipe: the relay opens it, forks its reader and execs the rest (the egress
  // relay or the shell), so the command is still the container's first process under the init.
  const stdinRelay = fifo ? [fifo.relay, '--stdin', STDIN_FIFO, '--'] : [];
  const attachStdin = req.stdin && !fifo;
  const labels = taskLabels(s.serverId, req.taskId, s.extraLabels);
  const ulimits = [
    { Name: 'nofile', Soft: s.nofile, Hard: s.nofile },
    { Name: 'nproc', Soft: s.nproc, Hard: s.nproc },
  ];
  // Podman's own mapping (not a Docker field): the task's user namespace, container UIDs and GIDs
  // 0-65535 onto the task's slot, so its user is host UID req.hostUid and no other task's.
  let IdMappings: { UIDMap: ReturnType<typeof idMappingFor>[]; GIDMap: ReturnType<typeof idMappingFor>[] } | undefined;
  if (req.hostUid !== undefined && req.hostUid !== null) {
    IdMappings = { UIDMap: [idMappingFor(req.hostUid)], GIDMap: [idMappingFor(req.hostUid)] };
    labels[LABEL_HOST_UID] = String(req.hostUid);
    // Queued signals count per user namespace, and again all together for the namespaces' creator
    // (root): a per-task bound keeps every task's own count, and their sum, below what root has.
    if (s.sigpending) ulimits.push({ Name: 'sigpending', Soft: s.sigpending, Hard: s.sigpending });
  }
  if (fifo) labels[LABEL_STDIN] = 'fifo';
  return {
    Image: req.image,
    // The command always runs as `/bin/sh -c <command>`, whatever entrypoint the image declares.
    Entrypoint: [...stdinRelay, ...(egress ? [egress.relay, String(egress.port), EGRESS_SOCKET, '--', '/bin/sh', '-c'] : ['/bin/sh', '-c'])],
    // With secrets, `/bin/sh -c <wrapper> <command>`: the wrapper exports them, then execs the command.
    Cmd: secretsFile ? [SECRETS_WRAPPER, req.command] : [req.command],
    User: CONTAINER_USER,
    WorkingDir: WORKSPACE_MOUNT,
    Env: [...userEnv.map(([k, v]) => `${k}=${v}`), ...Object.entries(forced).map(([k, v]) => `${k}=${v}`), `HOME=${TASK_HOME}`],
    Labels: labels,
    ...(IdMappings ? { IdMappings } : {}),
    Hostname: SANDBOX_HOSTNAME,
    Tty: false,
    AttachStdin: attachStdin,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: attachStdin,
    StdinOnce: false,
    NetworkDisabled: true,
    HostConfig: {
      Binds: binds,
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
      PidsLimit: pidsLimit(req.pids, req.isolation),
      // RLIMIT_NPROC counts per host UID (across every task when they share 65532): keep it far
      // above the pids cgroup so that one task's fork bomb never starves another.
      Ulimits: ulimits,
      NetworkMode: 'none',
      // A System V IPC / POSIX mqueue namespace of its own, which no other container can join.
      IpcMode: 'private',
      // The server reads the task's output from this log, on the host, whether or not it was
      // running when the output was written; bounded, and removed with the container.
      LogConfig: { Type: 'k8s-file', Config: { 'max-size': String(s.logMaxBytes) } },
      AutoRemove: false,
      RestartPolicy: { Name: 'no' },
    },
  };
}

export type ContainerSpec = ReturnType<typeof buildContainerSpec>;

/**
 * The create body of a pre-started sandbox: the task container's, field for field, except that
 * its command is the waiter (see waiter.ts), stdin is open for the job, no task env is set yet,
 * and /workspace is the slot's directory with `rslave` propagation, so that the workspace the
 * server mounts onto the slot at handoff appears inside. The slot's egress directory (an empty
 * tmpfs until a task with an allowlist has its socket directory mounted onto it) is mounted the
 * same way, read-only, where a cold sandbox has the task's socket directory; so is the slot's
 * stdin directory (until a task whose stdin goes through a pipe has the pipe's directory mounted
 * onto it), where a cold sandbox has that directory. A slot with a host
 * UID gives the member that user namespace (and its label), as a task container of that UID has.
 */
export function buildPooledSpec(shape: SandboxShape, slot: PoolSlot, waiter: string, s: SandboxSettings) {
  const spec = buildContainerSpec(
    { ...shape, taskId: '', command: waiter, env: {}, workspaceDir: slot.dir, workspaceReadonly: false, stdin: true, hostUid: slot.hostUid ?? null, backstopSeconds: slot.backstopSeconds },
    s,
  );
  const [workspace, ...rest] = spec.HostConfig.Binds;
  spec.HostConfig.Binds = [
    `${workspace},rslave`,
    ...rest,
    `${slot.egressDir}:${EGRESS_DIR}:ro,nosuid,nodev,noexec,rslave`,
    `${slot.stdinDir}:${STDIN_DIR}:ro,nosuid,nodev,noexec,rslave`,
  ];
  spec.Labels = { ...spec.Labels, [LABEL_SLOT]: slot.id };
  return spec;
}

/** The variables the server sets on every task, after the task's own (they win): as buildContainerSpec's. */
export function forcedEnv(s: SandboxSettings, egress?: SandboxRequest['egress']): Record<string, string> {
  return { ...(egress ? proxyEnv(egress.port) : {}), ...(s.caBundlePath ? caEnv() : {}), HOME: TASK_HOME };
}
