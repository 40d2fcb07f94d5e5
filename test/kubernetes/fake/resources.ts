// Per-kind validation and defaulting on create and update, close to what kube-apiserver's
// registry strategies enforce for the fields the runtime uses.
import { randomBytes, randomUUID } from 'node:crypto';
import { KIND_INFO, type Kind } from './store.js';
import { ApiError, invalid } from './status.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/;

function checkLabels(kind: string, group: string, name: string, field: string, labels: unknown): void {
  if (labels === undefined || labels === null) return;
  if (typeof labels !== 'object') throw invalid(kind, group, name, field, 'must be a map of strings');
  for (const [key, value] of Object.entries(labels as Record<string, unknown>)) {
    const slash = key.lastIndexOf('/');
    const prefix = slash >= 0 ? key.slice(0, slash) : '';
    const base = slash >= 0 ? key.slice(slash + 1) : key;
    if ((prefix && (!DNS_SUBDOMAIN.test(prefix) || prefix.length > 253)) || base.length > 63 || !LABEL_NAME.test(base)) {
      throw invalid(kind, group, name, field, `Invalid value: ${JSON.stringify(key)}: name part must consist of alphanumeric characters, '-', '_' or '.'`);
    }
    if (typeof value !== 'string' || value.length > 63 || !LABEL_VALUE.test(value)) {
      throw invalid(kind, group, name, `${field}`, `Invalid value: ${JSON.stringify(value)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (must be no more than 63 characters)`);
    }
  }
}

function checkPodSpec(kind: string, group: string, name: string, field: string, spec: any, job: boolean): void {
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) {
    throw invalid(kind, group, name, `${field}.containers`, 'Required value');
  }
  for (const [i, c] of spec.containers.entries()) {
    if (!c?.name || !DNS_LABEL.test(c.name)) throw invalid(kind, group, name, `${field}.containers[${i}].name`, 'Required value');
    if (!c.image) throw invalid(kind, group, name, `${field}.containers[${i}].image`, 'Required value');
  }
  const policy = spec.restartPolicy;
  if (job && policy !== 'Never' && policy !== 'OnFailure') {
    throw invalid(kind, group, name, `${field}.restartPolicy`, `Required value: valid values: "OnFailure", "Never"`);
  }
}

function defaultPodSpec(spec: any): void {
  spec.restartPolicy ??= 'Always';
  spec.terminationGracePeriodSeconds ??= 30;
  spec.dnsPolicy ??= 'ClusterFirst';
  spec.schedulerName ??= 'default-scheduler';
  spec.securityContext ??= {};
  for (const c of spec.containers) {
    c.terminationMessagePath ??= '/dev/termination-log';
    c.terminationMessagePolicy ??= 'File';
    c.imagePullPolicy ??= c.image?.endsWith(':latest') || !c.image?.includes(':') ? 'Always' : 'IfNotPresent';
    c.resources ??= {};
  }
}

/** Validates and defaults an object posted to `kind`; throws the Status the real server answers. */
export function prepareCreate(kind: Kind, body: any, namespace: string): any {
  const info = KIND_INFO[kind];
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, 'the body of the request was not a JSON object', 'BadRequest');
  if (body.kind !== undefined && body.kind !== info.kind) {
    throw new ApiError(400, `the API version in the data (${body.apiVersion}) does not match the expected API version (${info.apiVersion})`, 'BadRequest');
  }
  const obj = structuredClone(body);
  obj.metadata ??= {};
  const meta = obj.metadata;
  if (meta.namespace !== undefined && meta.namespace !== namespace) {
    throw new ApiError(400, 'the namespace of the provided object does not match the namespace sent on the request', 'BadRequest');
  }
  if (meta.resourceVersion) throw new ApiError(500, 'resourceVersion should not be set on objects to be created', 'InternalError');
  if (!meta.name && meta.generateName) meta.name = `${meta.generateName}${randomBytes(4).toString('hex').slice(0, 5)}`;
  const name = meta.name as string | undefined;
  if (!name) throw invalid(info.kind, info.group, '', 'metadata.name', 'Required value: name or generateName is required');
  const maxName = kind === 'jobs' ? 63 : 253;
  if (!DNS_SUBDOMAIN.test(name) || name.length > maxName) {
    throw invalid(info.kind, info.group, name, 'metadata.name', `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (must be no more than ${maxName} characters)`);
  }
  delete meta.uid;
  delete meta.creationTimestamp;
  delete meta.deletionTimestamp;
  delete meta.deletionGracePeriodSeconds;
  checkLabels(info.kind, info.group, name, 'metadata.labels', meta.labels);
  meta.uid = randomUUID();
  switch (kind) {
    case 'jobs':
      prepareJob(obj, name);
      break;
    case 'pods':
      checkPodSpec('Pod', '', name, 'spec', obj.spec, false);
      defaultPodSpec(obj.spec);
      obj.status = { phase: 'Pending', qosClass: 'BestEffort' };
      break;
    case 'secrets':
      prepareSecret(obj, name);
      break;
    case 'networkpolicies':
      obj.spec ??= {};
      obj.spec.podSelector ??= {};
      obj.spec.policyTypes ??= obj.spec.egress ? ['Ingress', 'Egress'] : ['Ingress'];
      break;
  }
  return obj;
}

function prepareJob(obj: any, name: string): void {
  const spec = obj.spec;
  const template = spec?.template;
  if (!template) throw invalid('Job', 'batch', name, 'spec.template', 'Required value');
  template.metadata ??= {};
  checkLabels('Job', 'batch', name, 'spec.template.metadata.labels', template.metadata.labels);
  checkPodSpec('Job', 'batch', name, 'spec.template.spec', template.spec, true);
  defaultPodSpec(template.spec);
  spec.suspend ??= false;
  spec.backoffLimit ??= 6;
  spec.completions ??= 1;
  spec.parallelism ??= 1;
  spec.completionMode ??= 'NonIndexed';
  spec.manualSelector ??= false;
  const uid = obj.metadata.uid as string;
  const jobLabels = { 'batch.kubernetes.io/controller-uid': uid, 'batch.kubernetes.io/job-name': name, 'controller-uid': uid, 'job-name': name };
  spec.selector ??= { matchLabels: { 'batch.kubernetes.io/controller-uid': uid } };
  template.metadata.labels = { ...(template.metadata.labels ?? {}), ...jobLabels };
  obj.status = {};
}

function prepareSecret(obj: any, name: string): void {
  obj.type ??= 'Opaque';
  const data: Record<string, string> = { ...(obj.data ?? {}) };
  for (const [key, value] of Object.entries(obj.stringData ?? {})) data[key] = Buffer.from(String(value)).toString('base64');
  delete obj.stringData;
  for (const [key, value] of Object.entries(data)) {
    if (!SECRET_KEY.test(key)) throw invalid('Secret', '', name, `data[${key}]`, `Invalid value: ${JSON.stringify(key)}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'`);
    if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
      throw new ApiError(400, `Secret in version "v1" cannot be handled as a Secret: illegal base64 data at input byte 0`, 'BadRequest');
    }
  }
  obj.data = data;
}

/**
 * Checks an update (patch or replace) against the stored object: identity fields are kept,
 * a stale resourceVersion is a 409, and the parts the real server refuses to change are refused.
 * `subresource` 'status' keeps everything but status; the main resource keeps status.
 */
export function prepareUpdate(kind: Kind, stored: any, next: any, subresource: string | undefined): any {
  const info = KIND_INFO[kind];
  const name = stored.metadata.name as string;
  if (!next || typeof next !== 'object' || Array.isArray(next)) throw new ApiError(400, 'the body of the request was not a JSON object', 'BadRequest');
  next.metadata ??= {};
  if (next.metadata.resourceVersion && next.metadata.resourceVersion !== stored.metadata.resourceVersion) {
    throw new ApiError(409, `Operation cannot be fulfilled on ${kind}${info.group ? '.' + info.group : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`, 'Conflict', { name, group: info.group, kind });
  }
  if (next.metadata.name !== undefined && next.metadata.name !== name) {
    throw new ApiError(400, 'the name of the object does not match the name on the URL', 'BadRequest');
  }
  for (const key of ['name', 'namespace', 'uid', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation']) {
    if (stored.metadata[key] === undefined) delete next.metadata[key];
    else next.metadata[key] = stored.metadata[key];
  }
  next.apiVersion = stored.apiVersion;
  next.kind = stored.kind;
  if (subresource === 'status') return { ...stored, status: next.status };
  if ('status' in stored) next.status = stored.status;
  checkLabels(info.kind, info.group, name, 'metadata.labels', next.metadata.labels);
  if (kind === 'jobs') {
    if (JSON.stringify(next.spec?.template) !== JSON.stringify(stored.spec.template)) {
      throw invalid('Job', 'batch', name, 'spec.template', 'Invalid value: field is immutable');
    }
    if (JSON.stringify(next.spec?.selector) !== JSON.stringify(stored.spec.selector)) {
      throw invalid('Job', 'batch', name, 'spec.selector', 'Invalid value: field is immutable');
    }
  }
  if (kind === 'pods' && JSON.stringify(next.spec?.containers) !== JSON.stringify(stored.spec.containers)) {
    throw invalid('Pod', '', name, 'spec', 'Forbidden: pod updates may not change fields other than `spec.containers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)');
  }
  if (kind === 'secrets') prepareSecret(next, name);
  return next;
}
