/**
 * The runtime seam. The task runner asks a ContainerEngine to start a command in a prepared
 * sandbox and receives ordered output events and exactly one exit. Only src/runtime/ knows that
 * Podman (through dockerode) sits behind it.
 */
import type { RuncReport } from './versions.js';

export type StreamName = 'stdout' | 'stderr';

export interface SandboxRequest {
  taskId: string;
  image: string;
  command: string;
  env: Readonly<Record<string, string>>;
  /** Host directory mounted at /workspace. */
  workspaceDir: string;
  workspaceReadonly: boolean;
  cpus: number;
  memoryMb: number;
  pids: number;
  stdin: boolean;
  /**
   * Egress: present when the task has an allowlist. The container keeps NetworkMode none;
   * the proxy's per-task socket is bind-mounted read-only and the image's relay wraps the command.
   */
  egress?: SandboxEgress | undefined;
}

export interface SandboxEgress {
  /** Host path of the task's proxy socket. */
  socketPath: string;
  /** Path of the relay inside the image (its io.sandboxshift.relay label). */
  relay: string;
  /** Port the relay listens on at 127.0.0.1 in the container. */
  port: number;
}

export interface SandboxExit {
  /** The container's exit code, or null when it never ran. */
  exitCode: number | null;
  /** Processes the kernel OOM killer killed in the container's memory cgroup (PID 1 or children). */
  oomKills: number;
}

export interface SandboxHandlers {
  onOutput(stream: StreamName, data: Buffer): void;
}

export interface RunningSandbox {
  readonly containerId: string;
  /** Resolves once, after the last output event was delivered and the container was removed. */
  readonly exit: Promise<SandboxExit>;
  /** Write to the task's stdin; false when the sandbox has no stdin or it was closed. */
  writeStdin(data: Buffer): boolean;
  endStdin(): void;
  /** SIGTERM the process tree, SIGKILL after `graceSeconds`. Idempotent. */
  stop(graceSeconds: number): Promise<void>;
}

export interface ContainerEngine {
  /** Throws EngineUnavailableError when the engine does not answer. */
  ping(): Promise<void>;
  imagePresent(image: string): Promise<boolean>;
  /** The image's labels, or null when the image is absent. */
  imageLabels(image: string): Promise<Record<string, string> | null>;
  /** Create, attach and start; rejects (EngineError) when the sandbox cannot start. */
  start(req: SandboxRequest, handlers: SandboxHandlers): Promise<RunningSandbox>;
  /** Remove every container this server left behind (by label). Returns how many. */
  reapOrphans(): Promise<number>;
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
