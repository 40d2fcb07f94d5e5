// The Job controller: one Pod per Job (parallelism and completions 1) created only while the Job
// is not suspended, status counts and conditions, backoffLimit, podFailurePolicy and podReplacementPolicy, the Job's
// activeDeadlineSeconds, and ttlSecondsAfterFinished garbage collection.
import { randomBytes } from 'node:crypto';
import type { Collector } from './gc.js';
import type { Store, StoreEvent } from './store.js';

function now(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

function setCondition(job: any, type: string, status: string, reason?: string, message?: string): void {
  const conditions: any[] = (job.status.conditions ??= []);
  const existing = conditions.find((c) => c.type === type);
  const t = now();
  if (existing) {
    if (existing.status === status && existing.reason === reason) return;
    existing.status = status;
    existing.lastProbeTime = t;
    existing.lastTransitionTime = t;
    if (reason !== undefined) existing.reason = reason;
    if (message !== undefined) existing.message = message;
  } else {
    conditions.push({ type, status, lastProbeTime: t, lastTransitionTime: t, ...(reason ? { reason } : {}), ...(message ? { message } : {}) });
  }
}

function finishedCondition(job: any): string | undefined {
  return (job.status?.conditions ?? []).find((c: any) => (c.type === 'Complete' || c.type === 'Failed') && c.status === 'True')?.type;
}

function exitCodeOf(pod: any): number | undefined {
  return pod.status?.containerStatuses?.[0]?.state?.terminated?.exitCode;
}

/** Pods are replaced only once they failed, not while they terminate. */
function replaceOnlyFailed(job: any): boolean {
  return (job.spec.podReplacementPolicy ?? (job.spec.podFailurePolicy ? 'Failed' : 'TerminatingOrFailed')) === 'Failed';
}

/** The podFailurePolicy rule a failed pod matches, with its index. */
function matchRule(job: any, pod: any): { action: string; index: number } | undefined {
  const rules: any[] = job.spec.podFailurePolicy?.rules ?? [];
  const code = exitCodeOf(pod);
  for (const [index, rule] of rules.entries()) {
    const on = rule.onExitCodes;
    if (on && code !== undefined) {
      const hit = (on.values ?? []).includes(code);
      if ((on.operator === 'In' && hit) || (on.operator === 'NotIn' && !hit)) return { action: rule.action, index };
    }
    for (const pc of rule.onPodConditions ?? []) {
      if ((pod.status?.conditions ?? []).some((c: any) => c.type === pc.type && c.status === (pc.status ?? 'True'))) return { action: rule.action, index };
    }
  }
  return undefined;
}

export class JobController {
  private readonly counted = new Map<string, Set<string>>();
  private readonly timers = new Map<string, NodeJS.Timeout[]>();
  private readonly queued = new Set<string>();
  private closed = false;

  constructor(private readonly store: Store, private readonly gc: Collector) {
    store.subscribe((ev) => this.onEvent(ev));
  }

  close(): void {
    this.closed = true;
    for (const list of this.timers.values()) for (const t of list) clearTimeout(t);
    this.timers.clear();
  }

  private onEvent(ev: StoreEvent): void {
    if (ev.kind === 'jobs') {
      if (ev.type === 'DELETED') {
        for (const t of this.timers.get(ev.object.metadata.uid) ?? []) clearTimeout(t);
        this.timers.delete(ev.object.metadata.uid);
        this.counted.delete(ev.object.metadata.uid);
      } else this.queue(ev.object.metadata.name);
    } else if (ev.kind === 'pods') {
      const owner = (ev.object.metadata.ownerReferences ?? []).find((r: any) => r.kind === 'Job' && r.controller);
      if (owner) this.queue(owner.name);
    }
  }

  private queue(name: string): void {
    if (this.queued.has(name) || this.closed) return;
    this.queued.add(name);
    setImmediate(() => {
      this.queued.delete(name);
      if (!this.closed) this.reconcile(name);
    });
  }

  private timer(uid: string, ms: number, fn: () => void): void {
    const list = this.timers.get(uid) ?? [];
    list.push(setTimeout(fn, ms));
    this.timers.set(uid, list);
  }

  private reconcile(name: string): void {
    const job = this.store.get('jobs', name);
    if (!job || job.metadata.deletionTimestamp) return;
    const uid = job.metadata.uid as string;
    const pods = this.store.list('pods').filter((p) => (p.metadata.ownerReferences ?? []).some((r: any) => r.uid === uid));
    const active = pods.filter((p) => p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed' && !p.metadata.deletionTimestamp);
    const counted = this.counted.get(uid) ?? new Set<string>();
    this.counted.set(uid, counted);
    const done = finishedCondition(job);
    if (done) return this.writeStatus(job, active, pods);

    let succeeded = job.status.succeeded ?? 0;
    let failed = job.status.failed ?? 0;
    let failure: { reason: string; message: string } | undefined;
    for (const p of pods) {
      if (counted.has(p.metadata.uid)) continue;
      if (p.status?.phase === 'Succeeded') {
        counted.add(p.metadata.uid);
        succeeded++;
      } else if (p.status?.phase === 'Failed') {
        counted.add(p.metadata.uid);
        const rule = matchRule(job, p);
        if (rule?.action === 'Ignore') continue;
        failed++;
        if (rule?.action === 'FailJob') {
          failure = {
            reason: 'PodFailurePolicy',
            message: `Container ${p.spec.containers[0].name} for pod ${job.metadata.namespace}/${p.metadata.name} failed with exit code ${exitCodeOf(p)} matching FailJob rule at index ${rule.index}`,
          };
        }
      }
    }
    if (!failure && failed > (job.spec.backoffLimit ?? 6)) failure = { reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' };

    this.store.update('jobs', name, (j) => {
      j.status.succeeded = succeeded || undefined;
      j.status.failed = failed || undefined;
      if (j.spec.suspend) {
        setCondition(j, 'Suspended', 'True', 'JobSuspended', 'Job suspended');
        delete j.status.startTime;
      } else {
        if ((j.status.conditions ?? []).some((c: any) => c.type === 'Suspended' && c.status === 'True')) {
          setCondition(j, 'Suspended', 'False', 'JobResumed', 'Job resumed');
        }
        j.status.startTime ??= now();
      }
      if (succeeded >= (j.spec.completions ?? 1)) {
        setCondition(j, 'SuccessCriteriaMet', 'True', 'CompletionsReached', 'Reached expected number of succeeded pods');
        setCondition(j, 'Complete', 'True', 'CompletionsReached', 'Reached expected number of succeeded pods');
        j.status.completionTime = now();
      } else if (failure) {
        setCondition(j, 'FailureTarget', 'True', failure.reason, failure.message);
        setCondition(j, 'Failed', 'True', failure.reason, failure.message);
      }
    });
    const updated = this.store.get('jobs', name);
    if (!updated) return;
    if (updated.spec.suspend || finishedCondition(updated)) {
      for (const p of active) this.deletePod(p.metadata.name);
    } else if (active.length === 0 && !(replaceOnlyFailed(updated) && pods.some((p) => p.metadata.deletionTimestamp && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed'))) {
      // podReplacementPolicy Failed (the only one a Job with a podFailurePolicy may have, and
      // its default then): a terminating pod is replaced only once it has failed.
      this.createPod(updated);
    }
    const deadline = updated.spec.activeDeadlineSeconds;
    if (!updated.spec.suspend && typeof deadline === 'number' && !finishedCondition(updated) && !this.timers.has(uid)) {
      const elapsed = Date.now() - Date.parse(updated.status.startTime);
      this.timer(uid, Math.max(0, deadline * 1000 - elapsed), () => this.deadline(name, uid));
    }
    this.writeStatus(updated, this.activePods(uid), pods);
  }

  private activePods(uid: string): any[] {
    return this.store
      .list('pods')
      .filter((p) => (p.metadata.ownerReferences ?? []).some((r: any) => r.uid === uid) && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed' && !p.metadata.deletionTimestamp);
  }

  private writeStatus(job: any, active: any[], pods: any[]): void {
    const ready = active.filter((p) => p.status?.phase === 'Running').length;
    const terminating = pods.filter((p) => p.metadata.deletionTimestamp).length;
    if ((job.status.active ?? 0) === active.length && (job.status.ready ?? 0) === ready && (job.status.terminating ?? 0) === terminating) {
      this.scheduleTtl(job);
      return;
    }
    const next = this.store.update('jobs', job.metadata.name, (j) => {
      j.status.active = active.length || undefined;
      j.status.ready = ready;
      j.status.terminating = terminating;
    });
    this.scheduleTtl(next);
  }

  private scheduleTtl(job: any): void {
    const ttl = job.spec.ttlSecondsAfterFinished;
    const uid = job.metadata.uid;
    if (typeof ttl !== 'number' || !finishedCondition(job) || this.ttlArmed.has(uid)) return;
    this.ttlArmed.add(uid);
    this.timer(uid, ttl * 1000, () => {
      const current = this.store.get('jobs', job.metadata.name);
      if (current?.metadata.uid !== uid) return;
      try {
        this.gc.delete('jobs', job.metadata.name, { propagationPolicy: 'Foreground' });
      } catch {
        // already gone
      }
    });
  }

  private readonly ttlArmed = new Set<string>();

  private deadline(name: string, uid: string): void {
    const job = this.store.get('jobs', name);
    if (!job || job.metadata.uid !== uid || finishedCondition(job) || job.spec.suspend) return;
    this.store.update('jobs', name, (j) => {
      setCondition(j, 'FailureTarget', 'True', 'DeadlineExceeded', 'Job was active longer than specified deadline');
      setCondition(j, 'Failed', 'True', 'DeadlineExceeded', 'Job was active longer than specified deadline');
    });
    for (const p of this.activePods(uid)) this.deletePod(p.metadata.name);
  }

  private deletePod(name: string): void {
    try {
      this.gc.delete('pods', name, {});
    } catch {
      // already gone
    }
  }

  private createPod(job: any): void {
    const template = job.spec.template;
    const pod = {
      metadata: {
        name: `${job.metadata.name}-${randomBytes(4).toString('hex').slice(0, 5)}`,
        generateName: `${job.metadata.name}-`,
        labels: { ...(template.metadata?.labels ?? {}) },
        annotations: { ...(template.metadata?.annotations ?? {}), 'batch.kubernetes.io/job-tracking': '' },
        ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: job.metadata.name, uid: job.metadata.uid, controller: true, blockOwnerDeletion: true }],
      },
      spec: structuredClone(template.spec),
      status: { phase: 'Pending', qosClass: 'BestEffort' },
    };
    this.store.create('pods', pod);
  }
}
