import { createHash } from 'node:crypto';

/** Labels and annotations on every object the Kubernetes engine creates. */
export const K8S_MANAGED_BY = 'app.kubernetes.io/managed-by';
export const K8S_MANAGER = 'sandboxshift';
export const K8S_INSTANCE = 'sandboxshift.io/instance';
export const K8S_TASK = 'sandboxshift.io/task-id';
/** What the pod's Job controller sets on every pod of a Job. */
export const K8S_JOB_NAME = 'batch.kubernetes.io/job-name';
/** The task id as the API knows it (upper case and `_` included). */
export const ANNOTATION_TASK_ID = 'sandboxshift.io/task';
/** The per-task line that separates the task's stdout from the workspace written back after it. */
export const ANNOTATION_BOUNDARY = 'sandboxshift.io/writeback-boundary';
/** Set on the Job once its pod's stdin gate was opened (header and workspace sent). */
export const ANNOTATION_GATE = 'sandboxshift.io/gate-opened';

/** The only container of a task pod. */
export const CONTAINER_NAME = 'task';

const MAX_NAME = 63;
const HASH_LEN = 10;

/**
 * A DNS-1123 label for `value`: lower case, runs of anything outside [a-z0-9] become `-`, then a
 * short hash of the original, so that two values differing only in case or `_` never collide;
 * `prefix` + the result is at most 63 characters.
 */
export function dnsName(prefix: string, value: string): string {
  const hash = createHash('sha256').update(value).digest('hex').slice(0, HASH_LEN);
  const room = MAX_NAME - prefix.length - HASH_LEN - 1;
  const readable = value
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, Math.max(0, room))
    .replace(/-+$/, '');
  return readable ? `${prefix}${readable}-${hash}` : `${prefix}${hash}`;
}

/** The Job (and Secret) name of a task: `ss-` + its DNS-1123 form. */
export function jobName(taskId: string): string {
  return dnsName('ss-', taskId);
}

/** A label value (≤ 63 characters of [A-Za-z0-9._-], alphanumeric at both ends) for a server id. */
export function labelValue(value: string): string {
  const v = value.replace(/[^A-Za-z0-9._-]+/g, '-').slice(0, 63).replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, '');
  return v || 'x';
}

export function ownLabels(instance: string): Record<string, string> {
  return { [K8S_MANAGED_BY]: K8S_MANAGER, [K8S_INSTANCE]: labelValue(instance) };
}

export function ownSelector(instance: string): string {
  return Object.entries(ownLabels(instance))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}
