// Deletion and the garbage collector: propagation policies (a batch/v1 Job defaults to Orphan),
// graceful pod deletion handed to the kubelet, and dependents whose owners are gone collected.
import { KIND_INFO, type Kind, type Store } from './store.js';
import { ApiError, successStatus } from './status.js';

export type Propagation = 'Orphan' | 'Background' | 'Foreground';

export interface DeleteOptions {
  propagationPolicy?: string;
  gracePeriodSeconds?: number;
  orphanDependents?: boolean;
  preconditions?: { uid?: string; resourceVersion?: string };
}

export interface DeleteResult {
  body: unknown;
  warning?: string;
}

const KINDS: Kind[] = ['jobs', 'pods', 'secrets', 'networkpolicies'];

export class Collector {
  private sweepQueued = false;
  private readonly foreground = new Map<string, { kind: Kind; name: string }>();
  private closed = false;

  constructor(
    private readonly store: Store,
    /** True while the kubelet still has the pod's processes to stop. */
    private readonly podIsLive: (name: string) => boolean,
  ) {
    store.subscribe((ev) => {
      if (ev.type === 'DELETED' || ev.object.metadata.ownerReferences?.length) this.queueSweep();
    });
  }

  close(): void {
    this.closed = true;
  }

  delete(kind: Kind, name: string, opts: DeleteOptions): DeleteResult {
    const obj = this.store.mustGet(kind, name);
    const info = KIND_INFO[kind];
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== obj.metadata.uid) {
      throw new ApiError(409, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${obj.metadata.uid}`, 'Conflict');
    }
    if (pre?.resourceVersion && pre.resourceVersion !== obj.metadata.resourceVersion) {
      throw new ApiError(409, `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${obj.metadata.resourceVersion}`, 'Conflict');
    }
    let policy = opts.propagationPolicy as Propagation | undefined;
    if (policy !== undefined && !['Orphan', 'Background', 'Foreground'].includes(policy)) {
      throw new ApiError(422, `DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "${policy}": supported values: "Foreground", "Background", "Orphan", "nil"`, 'Invalid');
    }
    let warning: string | undefined;
    if (policy === undefined && opts.orphanDependents !== undefined) policy = opts.orphanDependents ? 'Orphan' : 'Background';
    if (policy === undefined) {
      policy = kind === 'jobs' ? 'Orphan' : 'Background';
      if (kind === 'jobs') {
        warning = 'child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove them or set propagationPolicy=Orphan to suppress this warning';
      }
    }
    const details = { name, group: info.group, kind, uid: obj.metadata.uid };
    if (kind === 'pods') return { body: this.deletePod(name, opts.gracePeriodSeconds), warning };
    if (policy === 'Orphan') {
      this.orphanDependents(obj.metadata.uid);
      this.store.remove(kind, name);
      return { body: successStatus(details), warning };
    }
    if (policy === 'Foreground') {
      const updated = this.store.update(kind, name, (o) => {
        o.metadata.deletionTimestamp ??= new Date().toISOString().replace(/\.\d+Z$/, 'Z');
        o.metadata.deletionGracePeriodSeconds = 0;
        o.metadata.finalizers = [...new Set([...(o.metadata.finalizers ?? []), 'foregroundDeletion'])];
      });
      this.foreground.set(obj.metadata.uid, { kind, name });
      this.deleteDependents(obj.metadata.uid, 'Foreground');
      this.queueSweep();
      return { body: updated, warning };
    }
    this.store.remove(kind, name);
    return { body: successStatus(details), warning };
  }

  /** A graceful pod delete marks the pod; the kubelet stops it and then removes it. */
  private deletePod(name: string, grace: number | undefined): unknown {
    const pod = this.store.mustGet('pods', name);
    const period = Math.max(0, grace ?? pod.metadata.deletionGracePeriodSeconds ?? pod.spec.terminationGracePeriodSeconds ?? 30);
    if (period === 0 || !this.podIsLive(name)) return this.store.remove('pods', name);
    if (pod.metadata.deletionTimestamp && pod.metadata.deletionGracePeriodSeconds <= period) return pod;
    return this.store.update('pods', name, (p) => {
      p.metadata.deletionTimestamp = new Date(Date.now() + period * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
      p.metadata.deletionGracePeriodSeconds = period;
    });
  }

  private dependents(uid: string): Array<{ kind: Kind; obj: any }> {
    const out: Array<{ kind: Kind; obj: any }> = [];
    for (const kind of KINDS) {
      for (const obj of this.store.list(kind)) {
        if ((obj.metadata.ownerReferences ?? []).some((r: any) => r.uid === uid)) out.push({ kind, obj });
      }
    }
    return out;
  }

  private orphanDependents(uid: string): void {
    for (const { kind, obj } of this.dependents(uid)) {
      this.store.update(kind, obj.metadata.name, (o) => {
        o.metadata.ownerReferences = o.metadata.ownerReferences.filter((r: any) => r.uid !== uid);
        if (o.metadata.ownerReferences.length === 0) delete o.metadata.ownerReferences;
      });
    }
  }

  private deleteDependents(uid: string, policy: Propagation): void {
    for (const { kind, obj } of this.dependents(uid)) {
      if (obj.metadata.deletionTimestamp) continue;
      try {
        this.delete(kind, obj.metadata.name, { propagationPolicy: policy });
      } catch {
        // already gone
      }
    }
  }

  private queueSweep(): void {
    if (this.sweepQueued || this.closed) return;
    this.sweepQueued = true;
    setImmediate(() => {
      this.sweepQueued = false;
      if (!this.closed) this.sweep();
    });
  }

  /** Deletes every object all of whose owners are gone; finishes foreground deletions. */
  private sweep(): void {
    const uids = new Set<string>();
    for (const kind of KINDS) for (const obj of this.store.list(kind)) uids.add(obj.metadata.uid);
    for (const kind of KINDS) {
      for (const obj of this.store.list(kind)) {
        const refs = obj.metadata.ownerReferences ?? [];
        if (refs.length === 0 || obj.metadata.deletionTimestamp) continue;
        if (refs.every((r: any) => !uids.has(r.uid))) {
          try {
            this.delete(kind, obj.metadata.name, { propagationPolicy: 'Background' });
          } catch {
            // already gone
          }
        }
      }
    }
    for (const [uid, owner] of [...this.foreground]) {
      if (this.dependents(uid).length === 0) {
        this.foreground.delete(uid);
        this.store.remove(owner.kind, owner.name);
      }
    }
  }
}
