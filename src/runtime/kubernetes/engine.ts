import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import {
  EngineError,
  type AdoptOptions,
  type ContainerEngine,
  type EngineVersions,
  type OwnContainer,
  type RunningSandbox,
  type SandboxHandlers,
  type SandboxJob,
  type SandboxShape,
} from '../engine.js';
import { describe, KubeCalls, loadKubeConfig } from './calls.js';
import { buildJob, buildSecret, type KubernetesJobSettings } from './job.js';
import { ANNOTATION_BOUNDARY, ANNOTATION_GATE, ANNOTATION_TASK_ID, jobName } from './names.js';
import { isTerminal, stuckReason } from './pods.js';
import { PodTask } from './task.js';
import { spoolWorkspace, type WriteBackLimits } from './workspace-io.js';

export interface KubernetesSettings extends KubernetesJobSettings {
  /** kubeconfig file, or null for the in-cluster service account. */
  kubeconfig: string | null;
  /** Largest workspace (as a tar) streamed into a pod. */
  maxWorkspaceBytes: number;
  /** Server directory where workspaces are spooled as tars before they are sent. */
  spoolDir: string;
  writeBack: WriteBackLimits;
  /** How long a pod may take to be scheduled, pull its image and reach its stdin gate. */
  podStartTimeoutMs: number;
}

/** On the task's record: what Kubernetes does not enforce per pod. */
export const PIDS_NOTE = 'resources.pids is not enforced on Kubernetes: PID limits are set per node (kubelet podPidsLimit), not per pod';

/**
 * The ContainerEngine on a Kubernetes cluster: one batch/v1 Job per task, its pod hardened for the
 * Pod Security `restricted` profile, output over pods/attach behind a stdin gate, the workspace
 * streamed in through that gate and written back after the command, the exit from pod status.
 * Egress goes through the egress proxy's URL with per-task credentials.
 */
export class KubernetesEngine implements ContainerEngine {
  readonly egressVia = 'proxy-url' as const;
  private refusal: string | null = null;
  readonly calls: KubeCalls;

  constructor(
    readonly settings: KubernetesSettings,
    private readonly log: Logger,
  ) {
    this.calls = new KubeCalls(loadKubeConfig(settings.kubeconfig), settings.namespace, settings.serverId, log);
    mkdirSync(settings.spoolDir, { recursive: true, mode: 0o700 });
  }

  egressRefusal(): string | null {
    return this.refusal;
  }

  /** Set by the NetworkPolicy self-test (canary.ts). */
  setEgressRefusal(reason: string | null): void {
    this.refusal = reason;
  }

  async ping(): Promise<void> {
    try {
      await this.calls.batch.listNamespacedJob({ namespace: this.settings.namespace, limit: 1 });
    } catch (err) {
      throw new EngineError(`the Kubernetes API does not answer: ${describe(err)}`, true);
    }
  }

  /** The cluster pulls images itself: whether it can is known only when a pod starts. */
  async imagePresent(): Promise<boolean> {
    return true;
  }

  /** No image labels are read from a cluster (egress needs no relay here). */
  async imageLabels(): Promise<Record<string, string> | null> {
    return {};
  }

  async versions(): Promise<EngineVersions> {
    await this.ping();
    return { podman: null, runc: null, runsc: null };
  }

  private async watching(): Promise<void> {
    try {
      await this.calls.pods.start();
    } catch (err) {
      throw new EngineError(`the Kubernetes API does not list pods: ${describe(err)}`, true);
    }
  }

  async start(shape: SandboxShape, job: SandboxJob, handlers: SandboxHandlers): Promise<RunningSandbox> {
    await this.watching();
    const name = jobName(job.taskId);
    const boundary = job.workspaceReadonly ? null : `SANDBOXSHIFT-WRITEBACK-${randomBytes(18).toString('hex')}`;
    // Refused before anything exists in the cluster when the workspace is over the bound.
    const spool = await spoolWorkspace(job.workspaceDir, join(this.settings.spoolDir, `${name}.tar`), this.settings.maxWorkspaceBytes);
    let task: PodTask | null = null;
    try {
      handlers.onNote?.(PIDS_NOTE);
      const proxyUrl = job.egress?.proxyUrl ?? null;
      if (job.egress && !proxyUrl) throw new EngineError('a task with an allowlist needs a proxy URL on Kubernetes (egress.tcp)');
      const created = await this.calls.createJob(buildJob({ req: { ...shape, ...job }, boundary, proxy: proxyUrl !== null }, this.settings));
      const secret = buildSecret({ ...shape, ...job }, proxyUrl, { name, uid: created.metadata!.uid! }, this.settings);
      if (secret) await this.calls.putSecret(secret);
      await this.calls.resumeJob(name);
      const pod = await this.running(name);
      task = new PodTask(this.calls, { job: name, pod: pod.metadata!.name!, boundary, workspaceDir: boundary ? job.workspaceDir : null, writeBackLimits: this.settings.writeBack }, handlers, 0);
      await task.open({ spool, stdin: job.stdin });
      return task.sandbox();
    } catch (err) {
      await task?.abandon();
      await this.remove(name).catch(() => undefined);
      if (err instanceof EngineError) throw err;
      throw new EngineError(`the task's Job could not be started: ${describe(err)}`);
    } finally {
      await spool.remove();
    }
  }

  /** The task's pod once it runs (waiting at its stdin gate); refuses one that ended or cannot start. */
  private async running(name: string): Promise<V1Pod> {
    let stuck: string | null = null;
    const { pod, deleted } = await this.calls.pods
      .waitFor(
        name,
        (p, gone) => {
          stuck = stuckReason(p);
          return gone || stuck !== null || isTerminal(p) || p.status?.phase === 'Running';
        },
        this.settings.podStartTimeoutMs,
      )
      .catch((err: unknown) => {
        throw new EngineError(`the task's pod did not start within ${Math.round(this.settings.podStartTimeoutMs / 1000)} s (engine.kubernetes.podStartTimeoutSeconds): ${(err as Error).message}`);
      });
    if (stuck) throw new EngineError(`the task's pod cannot start: ${stuck}`);
    if (deleted) throw new EngineError("the task's pod was deleted before it started");
    if (pod.status?.phase !== 'Running') throw new EngineError(`the task's pod ended before the server attached (phase ${pod.status?.phase}, reason ${pod.status?.reason ?? 'none'})`);
    return pod;
  }

  async listOurs(): Promise<OwnContainer[]> {
    await this.watching();
    const jobs = await this.calls.listJobs().catch((err: unknown) => {
      throw new EngineError(`the Kubernetes API does not list jobs: ${describe(err)}`, true);
    });
    return jobs.map((j) => {
      const name = j.metadata!.name!;
      const pod = this.calls.pods.current(name);
      const done = (j.status?.conditions ?? []).some((c) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True');
      const ended = done || (pod !== undefined && (pod.deleted || isTerminal(pod.pod)));
      return { containerId: name, taskId: j.metadata?.annotations?.[ANNOTATION_TASK_ID] ?? '', running: !ended, slot: null, hostUid: null };
    });
  }

  async adopt(containerId: string, opts: AdoptOptions, handlers: SandboxHandlers): Promise<RunningSandbox | null> {
    await this.watching();
    const job = await this.calls.readJob(containerId);
    if (!job) return null;
    let now = this.calls.pods.current(containerId);
    if (!now) {
      now = await this.calls.pods.waitFor(containerId, () => true, this.settings.podStartTimeoutMs).catch(() => undefined);
      if (!now) {
        await this.remove(containerId);
        return null;
      }
    }
    const podName = now.pod.metadata!.name!;
    const boundary = now.pod.metadata?.annotations?.[ANNOTATION_BOUNDARY] ?? null;
    const since = opts.from?.offset ?? 0;
    const gateOpened = job.metadata?.annotations?.[ANNOTATION_GATE] === 'true';
    const task = new PodTask(
      this.calls,
      { job: containerId, pod: podName, boundary, workspaceDir: boundary && opts.workspaceDir ? opts.workspaceDir : null, writeBackLimits: this.settings.writeBack },
      handlers,
      since,
    );
    if (now.deleted || isTerminal(now.pod)) {
      await task.catchUp(since);
      return task.sandbox();
    }
    if (!gateOpened) {
      // The earlier server stopped before it opened the gate: nothing of the task ran yet.
      if (!opts.workspaceDir) throw new EngineError("the task's pod never received its workspace and no workspace was given to send");
      const spool = await spoolWorkspace(opts.workspaceDir, join(this.settings.spoolDir, `${containerId}.tar`), this.settings.maxWorkspaceBytes);
      try {
        await task.open({ spool, stdin: opts.stdin });
      } finally {
        await spool.remove();
      }
      return task.sandbox();
    }
    if (opts.stdin) handlers.onNote?.("the task's stdin was closed when the server restarted (a pod's stdin closes with its first attach)");
    await task.rejoin();
    return task.sandbox();
  }

  async remove(containerId: string): Promise<void> {
    try {
      for (const pod of await this.calls.podsOf(containerId)) await this.calls.stopPod(containerId, pod, 0);
      await this.calls.removeJob(containerId);
    } catch (err) {
      throw new EngineError(`the task's Job could not be deleted: ${describe(err)}`);
    }
  }

  /** Nothing runs in the background between tasks (the shape of PodmanEngine.idle). */
  async idle(): Promise<void> {}

  async close(): Promise<void> {
    await this.calls.pods.stop();
  }
}
