/**
 * The runtime seam. The task runner asks a ContainerEngine to start a command in a prepared
 * sandbox and receives ordered output events and exactly one exit. Only src/runtime/ knows that
 * Podman (through dockerode) sits behind it.
 */
import type { Isolation } from '../config/schema.js';
import type { RuncReport } from './versions.js';

export type StreamName = 'stdout' | 'stderr';

/** Where a reader of a container's log stands: the file (by inode) and the byte offset in it. */
export interface LogPosition {
  ino: number;
  offset: number;
}

/**
 * What the sandbox is: image, limits and network mode. The security settings come from the
 * engine's own configuration and are the same for every sandbox.
 */
export interface SandboxShape {
  image: string;
  cpus: number;
  memoryMb: number;
  pids: number;
  /** The OCI runtime the container is created with: runc, or gVisor's runsc. */
  isolation: Isolation;
}

/** What runs in the sandbox: the command and what it is given. */
export interface SandboxJob {
  taskId: string;
  command: string;
  env: Readonly<Record<string, string>>;
  /**
   * Variables whose values are secret: they reach the command's environment without being part
   * of the container's configuration (names the engine sets itself win, as for `env`).
   */
  secretEnv?: Readonly<Record<string, string>> | undefined;
  /** Host directory mounted at /workspace. */
  workspaceDir: string;
  /**
   * With a host UID: makes that UID's idmapped view of the workspace and returns its directory,
   * which is then what is mounted (workspaceDir is the workspace itself until then). A pooled
   * sandbox that takes the task runs it as its own UID and never asks for this view.
   */
  workspaceView?: (() => Promise<string>) | undefined;
  /** The workspace's id, when workspaceDir is a view of it rather than its own mount (an idmapped view). */
  workspaceId?: string | undefined;
  workspaceReadonly: boolean;
  stdin: boolean;
  /**
   * For a task with stdin whose image's relay has the stdin mode: that relay's path. Stdin then
   * goes through a per-task named pipe the relay reads, which outlives the server and the
   * engine's service; without it stdin goes through the engine's attach connection.
   */
  stdinRelay?: string | undefined;
  /**
   * The task's own host UID (a user namespace maps container UID 65532 to it), or null/absent to
   * run as host UID 65532 without a user namespace. workspaceDir must then be an idmapped view.
   */
  hostUid?: number | null | undefined;
  /**
   * Present when the task has an allowlist. The container keeps network mode none; the
   * directory holding the proxy's per-task socket is bind-mounted read-only and the image's
   * relay wraps the command.
   */
  egress?: SandboxEgress | undefined;
  /**
   * The engine stops the container this many seconds after it started even when no server is
   * there to do it (the server's own deadline comes first).
   */
  backstopSeconds: number;
}

export type SandboxRequest = SandboxShape & SandboxJob;

export interface SandboxEgress {
  /** Host directory holding the task's proxy socket (`egress.sock`), mounted as a whole. */
  socketDir: string;
  /** Path of the relay inside the image (its io.sandboxshift.relay label). */
  relay: string;
  /** Port the relay listens on at 127.0.0.1 in the container. */
  port: number;
  /**
   * For an engine whose egress goes through a proxy URL (`egressVia: 'proxy-url'`): the URL, with
   * the task's credentials, that the sandbox gets as HTTP(S)_PROXY (socketDir and relay unused).
   */
  proxyUrl?: string;
}

export interface SandboxExit {
  /** The container's exit code, or null when it never ran. */
  exitCode: number | null;
  /** Processes the kernel OOM killer killed in the container's memory cgroup (PID 1 or children). */
  oomKills: number;
  /** When the container stopped (the engine's record), null when unknown. */
  finishedAt: Date | null;
  /** True when the container disappeared before its exit could be read. */
  vanished: boolean;
}

export interface SandboxHandlers {
  /** The container's output, in order, exactly once. */
  onOutput(stream: StreamName, data: Buffer): void;
  /**
   * After a batch of output: where in the engine's log everything so far was delivered. A
   * sandbox adopted later with this position continues right after it.
   */
  onPosition?(at: LogPosition): void;
  /** Output between the adopted position and what the engine still holds is gone. */
  onLost?(): void;
  /**
   * Output the engine recovered from a log that merges the two streams (stdout and stderr
   * interleaved, no longer kept apart); without this handler it is delivered as stdout.
   */
  onCombined?(data: Buffer): void;
  /** Something the engine could not do as asked, for the task's record (one sentence). */
  onNote?(note: string): void;
}

export interface RunningSandbox {
  readonly containerId: string;
  /**
   * Set when the task runs as a host UID other than its job's `hostUid`: a pre-started sandbox's
   * own (the task's workspace is then shown to it through that UID's idmapped view).
   */
  readonly hostUid?: number | undefined;
  /** Resolves once, after the last output event was delivered and the container was removed. */
  readonly exit: Promise<SandboxExit>;
  /** Write to the task's stdin; false when the sandbox has no stdin or it was closed. */
  writeStdin(data: Buffer): boolean;
  endStdin(): void;
  /** SIGTERM the process tree, SIGKILL after `graceSeconds`. Idempotent. */
  stop(graceSeconds: number): Promise<void>;
  /**
   * Stops following the sandbox and leaves its container running (a server that shuts down for
   * the next one to adopt it). `exit` never resolves afterwards.
   */
  detach(): Promise<void>;
}

/** A container this server created, found in the engine. */
export interface OwnContainer {
  containerId: string;
  /** The task it runs ('' for a pre-started container, whose task is recorded elsewhere). */
  taskId: string;
  running: boolean;
  /** The task's host UID from the container's label, null without a user namespace. */
  hostUid: number | null;
  /** The pool slot of a pre-started container, null for one created for its task. */
  slot: string | null;
}

/**
 * Where a pre-started sandbox's workspace will appear: a host directory mounted `rslave` at
 * /workspace; its egress socket directory and its stdin pipe directory: each one mounted
 * `rslave` where a cold sandbox has the task's socket directory or the task's pipe directory.
 */
export interface PoolSlot {
  id: string;
  dir: string;
  egressDir: string;
  stdinDir: string;
  /** The engine stops the container this many seconds after it started (its backstop). */
  backstopSeconds: number;
  /** The member's own host UID (its container gets that user namespace), or null/absent for none. */
  hostUid?: number | null | undefined;
}

/**
 * A sandbox started before its task: hardened as any other, its first process waits on stdin
 * for the job. Handed one job at most, then destroyed like a cold sandbox.
 */
export interface PooledSandbox {
  readonly containerId: string;
  readonly startedAt: number;
  /** False once the container is known to have ended (it cannot take a job). */
  readonly alive: boolean;
  /**
   * For a job whose stdin goes through a pipe (`stdin` and `stdinRelay` set): makes the pipe's
   * host directory, the pipe owned by the member's user, and returns it, to be mounted onto the
   * slot's stdin directory before the handoff. Null when the job's stdin (if any) goes through
   * the member's attach connection.
   */
  stdinPipe(job: SandboxJob): string | null;
  /**
   * Sends the job (the workspace, and the stdin pipe stdinPipe made, must already be mounted in
   * the slot). Rejects before anything was sent, or resolves with the running sandbox.
   */
  handoff(job: SandboxJob, handlers: SandboxHandlers): Promise<RunningSandbox>;
  /** Removes a sandbox that never got a job. */
  discard(): Promise<void>;
}

export interface AdoptOptions {
  stdin: boolean;
  from: LogPosition | null;
  /** The task's id (a pre-started container's labels do not name it). */
  taskId?: string;
  /** The task's workspace on the host (mounted), for an engine that copies the workspace in and out. */
  workspaceDir?: string;
}

export interface ContainerEngine {
  /**
   * How a sandbox reaches the egress proxy: `socket` (default) a bind-mounted per-task socket and
   * the image's relay; `proxy-url` an HTTP proxy URL with per-task credentials (SandboxEgress.proxyUrl).
   */
  readonly egressVia?: 'socket' | 'proxy-url';
  /** Why tasks with an allowlist cannot run on this engine now (its network policy is not enforced), or null. */
  egressRefusal?(): string | null;
  /** Throws EngineUnavailableError when the engine does not answer. */
  ping(): Promise<void>;
  imagePresent(image: string): Promise<boolean>;
  /** The image's labels, or null when the image is absent. */
  imageLabels(image: string): Promise<Record<string, string> | null>;
  /** Create and start; rejects (EngineError) when the sandbox cannot start. */
  start(shape: SandboxShape, job: SandboxJob, handlers: SandboxHandlers): Promise<RunningSandbox>;
  /** Create and start a sandbox of this shape that waits for its job (engines without it have no pool). */
  prestart?(shape: SandboxShape, slot: PoolSlot): Promise<PooledSandbox>;
  /** Every container carrying this server's label, running or not. */
  listOurs(): Promise<OwnContainer[]>;
  /**
   * Follows a container an earlier run started (running or already exited), delivering its
   * output from `from` on; null when the container no longer exists.
   */
  adopt(containerId: string, opts: AdoptOptions, handlers: SandboxHandlers): Promise<RunningSandbox | null>;
  /** Removes a container (force); a missing one is not an error. */
  remove(containerId: string): Promise<void>;
  /** Resolves once an exited sandbox's container is gone (it is removed after its exit is reported). */
  whenRemoved?(containerId: string): Promise<void>;
  /** Versions of the engine and its OCI runtimes; throws EngineError when the engine does not answer. */
  versions(): Promise<EngineVersions>;
}

export interface EngineVersions {
  /** The engine's own version (Podman's), null when it names none. */
  podman: string | null;
  /** The runc the engine runs containers with, null when its default runtime is not runc. */
  runc: RuncReport | null;
  /** The installed gVisor runsc's version, null when the engine knows of no runsc binary. */
  runsc: string | null;
}

export class EngineError extends Error {
  constructor(
    message: string,
    readonly unavailable = false,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}
