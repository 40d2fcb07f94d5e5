import { readFileSync } from 'node:fs';
import type { Writable, Readable } from 'node:stream';
import { Attach, BatchV1Api, CoreV1Api, KubeConfig, Log, PatchStrategy, setHeaderOptions, type V1Job, type V1Secret } from '@kubernetes/client-node';
import type WebSocket from 'isomorphic-ws';
import type { Logger } from 'pino';
import { readLogBetween } from './logs.js';
import { ANNOTATION_GATE, CONTAINER_NAME, K8S_TASK, ownSelector } from './names.js';
import { PodWatch } from './pods.js';

/** The HTTP status of a failed API call (client-node's ApiException), or null. */
export function statusOf(err: unknown): number | null {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? code : null;
}

/** A failed call in one line: its status and the Status message of the body when there is one. */
export function describe(err: unknown): string {
  const code = statusOf(err);
  const body = (err as { body?: unknown })?.body;
  let message = err instanceof Error ? err.message : String(err);
  if (typeof body === 'string') {
    try {
      const parsed = JSON.parse(body) as { message?: string };
      if (parsed.message) message = parsed.message;
    } catch {
      // not JSON: keep the error's own message
    }
  }
  return code === null ? message : `HTTP ${code}: ${message.split('\n')[0]!.slice(0, 300)}`;
}

/** A kubeconfig file, or the pod's in-cluster service account when `path` is null. */
export function loadKubeConfig(path: string | null): KubeConfig {
  const kc = new KubeConfig();
  if (path) kc.loadFromString(readFileSync(path, 'utf8'));
  else kc.loadFromCluster();
  return kc;
}

const MERGE_PATCH = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Every call the Kubernetes engine makes, in one namespace (the Role grants exactly these). */
export class KubeCalls {
  readonly core: CoreV1Api;
  readonly batch: BatchV1Api;
  readonly pods: PodWatch;
  private readonly attachApi: Attach;
  private readonly logApi: Log;

  constructor(
    readonly kc: KubeConfig,
    readonly namespace: string,
    readonly instance: string,
    log: Logger,
  ) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.batch = kc.makeApiClient(BatchV1Api);
    this.attachApi = new Attach(kc);
    this.logApi = new Log(kc);
    this.pods = new PodWatch(kc, this.core, namespace, ownSelector(instance), log);
  }

  get selector(): string {
    return ownSelector(this.instance);
  }

  /** Creates the Job; a 409 (a retried create) reads the existing one. */
  async createJob(body: V1Job): Promise<V1Job> {
    try {
      return await this.batch.createNamespacedJob({ namespace: this.namespace, body, fieldValidation: 'Strict' });
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      return this.batch.readNamespacedJob({ name: body.metadata!.name!, namespace: this.namespace });
    }
  }

  async readJob(name: string): Promise<V1Job | null> {
    try {
      return await this.batch.readNamespacedJob({ name, namespace: this.namespace });
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async listJobs(): Promise<V1Job[]> {
    return (await this.batch.listNamespacedJob({ namespace: this.namespace, labelSelector: this.selector })).items;
  }

  /** Creates the task's Secret; one left by an earlier try of the same create is replaced. */
  async putSecret(body: V1Secret): Promise<void> {
    try {
      await this.core.createNamespacedSecret({ namespace: this.namespace, body });
    } catch (err) {
      if (statusOf(err) !== 409) throw err;
      await this.core.replaceNamespacedSecret({ name: body.metadata!.name!, namespace: this.namespace, body });
    }
  }

  resumeJob(name: string): Promise<V1Job> {
    return this.batch.patchNamespacedJob({ name, namespace: this.namespace, body: { spec: { suspend: false } } }, MERGE_PATCH);
  }

  async markGateOpened(name: string): Promise<void> {
    await this.batch.patchNamespacedJob({ name, namespace: this.namespace, body: { metadata: { annotations: { [ANNOTATION_GATE]: 'true' } } } }, MERGE_PATCH);
  }

  /** Deletes the Job and (Background propagation) its pods; a missing Job is not an error. */
  async removeJob(name: string): Promise<void> {
    try {
      await this.batch.deleteNamespacedJob({ name, namespace: this.namespace, propagationPolicy: 'Background' });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
  }

  /** Stops a task now: its pod is deleted with `grace` seconds, then its Job (Background). */
  async stopPod(job: string, pod: string, grace: number): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({ name: pod, namespace: this.namespace, gracePeriodSeconds: grace });
    } catch (err) {
      if (statusOf(err) !== 404) throw err;
    }
    await this.removeJob(job);
  }

  /** Pods of one task's Job (normally one). */
  async podsOf(job: string): Promise<string[]> {
    const list = await this.core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${this.selector},${K8S_TASK}=${job}` });
    return list.items.map((p) => p.metadata!.name!);
  }

  attach(pod: string, stdout: Writable, stderr: Writable, stdin: Readable | null): Promise<WebSocket> {
    return this.attachApi.attach(this.namespace, pod, CONTAINER_NAME, stdout, stderr, stdin, false);
  }

  readLog(pod: string, sinceMs: number, untilMs: number): Promise<Buffer> {
    return readLogBetween(this.logApi, this.namespace, pod, CONTAINER_NAME, sinceMs, untilMs);
  }
}
