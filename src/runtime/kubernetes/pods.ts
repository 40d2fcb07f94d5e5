import { makeInformer, type CoreV1Api, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { K8S_TASK } from './names.js';

export type PodListener = (pod: V1Pod, deleted: boolean) => void;

/** Restart delay of the watch after it failed (the informer does not restart itself after an error). */
const RESTART_MS = 500;

/**
 * One informer (list + watch by label) over this server's task pods. The client library re-lists
 * after 410 Gone and re-watches after a clean end; after an error it is restarted here. Listeners
 * are keyed by the pod's task label (its Job's name).
 */
export class PodWatch {
  private readonly informer;
  private started: Promise<void> | null = null;
  private stopped = false;
  private readonly listeners = new Map<string, Set<PodListener>>();
  /** The last state of each task's pod, kept after its deletion until forgotten. */
  private readonly last = new Map<string, { pod: V1Pod; deleted: boolean }>();

  constructor(
    kc: KubeConfig,
    core: CoreV1Api,
    namespace: string,
    selector: string,
    private readonly log: Logger,
  ) {
    this.informer = makeInformer<V1Pod>(kc, `/api/v1/namespaces/${namespace}/pods`, () => core.listNamespacedPod({ namespace, labelSelector: selector }), selector);
    this.informer.on('add', (p) => this.emit(p, false));
    this.informer.on('update', (p) => this.emit(p, false));
    this.informer.on('delete', (p) => this.emit(p, true));
    this.informer.on('error', (err: unknown) => {
      if (this.stopped) return;
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'pod watch failed; restarting it');
      setTimeout(() => {
        if (!this.stopped) this.informer.start().catch(() => undefined);
      }, RESTART_MS).unref();
    });
  }

  /** Resolves after the first list; rejects when the API cannot be listed (tried again on the next call). */
  start(): Promise<void> {
    this.started ??= this.informer.start().catch((err: unknown) => {
      this.started = null;
      throw err;
    });
    return this.started;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.informer.stop().catch(() => undefined);
  }

  private emit(pod: V1Pod, deleted: boolean): void {
    const key = pod.metadata?.labels?.[K8S_TASK];
    if (!key) return;
    this.last.set(key, { pod, deleted });
    for (const cb of [...(this.listeners.get(key) ?? [])]) cb(pod, deleted);
  }

  current(key: string): { pod: V1Pod; deleted: boolean } | undefined {
    return this.last.get(key);
  }

  forget(key: string): void {
    this.last.delete(key);
  }

  subscribe(key: string, cb: PodListener): () => void {
    let set = this.listeners.get(key);
    if (!set) this.listeners.set(key, (set = new Set()));
    set.add(cb);
    return () => {
      set.delete(cb);
      if (set.size === 0) this.listeners.delete(key);
    };
  }

  /**
   * Resolves with the task's pod once `done` holds for it (checked on the current state first),
   * or rejects after `timeoutMs` or when `signal` aborts.
   */
  waitFor(key: string, done: (pod: V1Pod, deleted: boolean) => boolean, timeoutMs: number, signal?: AbortSignal): Promise<{ pod: V1Pod; deleted: boolean }> {
    return new Promise((resolve, reject) => {
      const now = this.last.get(key);
      if (now && done(now.pod, now.deleted)) return resolve(now);
      const finish = (err: Error | null, v?: { pod: V1Pod; deleted: boolean }) => {
        clearTimeout(timer);
        off();
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(err);
        else resolve(v!);
      };
      const off = this.subscribe(key, (pod, deleted) => {
        if (done(pod, deleted)) finish(null, { pod, deleted });
      });
      const timer = setTimeout(() => finish(new Error(`timed out after ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
      const onAbort = () => finish(new Error('aborted'));
      signal?.addEventListener('abort', onAbort);
    });
  }
}

export const isTerminal = (pod: V1Pod) => pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';

/** Why a pending pod will not start by itself (image pull, bad config), or null. */
export function stuckReason(pod: V1Pod): string | null {
  const waiting = pod.status?.containerStatuses?.[0]?.state?.waiting;
  const fatal = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'CreateContainerConfigError', 'CreateContainerError', 'RunContainerError']);
  if (waiting?.reason && fatal.has(waiting.reason)) return `${waiting.reason}${waiting.message ? `: ${waiting.message}` : ''}`;
  return null;
}
