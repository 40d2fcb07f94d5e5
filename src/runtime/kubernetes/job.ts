import type { V1EnvVar, V1Job, V1Secret } from '@kubernetes/client-node';
import { TASK_HOME, WORKSPACE_MOUNT } from '../spec.js';
import type { SandboxRequest } from '../engine.js';
import { GATE_SCRIPT } from './gate.js';
import { ANNOTATION_BOUNDARY, ANNOTATION_TASK_ID, CONTAINER_NAME, jobName, K8S_TASK, ownLabels } from './names.js';

/** Install-wide settings that shape every task Job. */
export interface KubernetesJobSettings {
  serverId: string;
  namespace: string;
  /** RuntimeClass of every task pod (gVisor, Kata), or null for the cluster's default. */
  runtimeClassName: string | null;
  /** False runs every task pod in its own user namespace (`hostUsers: false`). */
  hostUsers: boolean;
  ttlSecondsAfterFinished: number;
  /** Size of the memory-backed /tmp, in MiB (it counts against the memory limit). */
  tmpfsMb: number;
  /** Size limit of the /workspace emptyDir, in MiB (the workspace quota). */
  workspaceMb: number;
  /** The pod's terminationGracePeriodSeconds. */
  graceSeconds: number;
  /** Added to the backstop for scheduling and the image pull (pod), and again for queueing (Job). */
  startAllowanceSeconds: number;
  /** Image the cluster pulls for each runtime image (an image not listed is pulled by its own name). */
  images: Readonly<Record<string, string>>;
  extraLabels?: Readonly<Record<string, string>>;
}

/** The user and group every task process runs as, as on Podman. */
export const POD_UID = 65532;

/** Secret keys: the proxy URL, and each secret variable under `env.<NAME>`. */
export const SECRET_PROXY_KEY = 'proxyUrl';
export const secretEnvKey = (name: string) => `env.${name}`;

/** Variables pointing every HTTP client at the egress proxy (both spellings; curl reads the lower-case one). */
export const PROXY_VARIABLES = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy'] as const;

export interface JobInput {
  req: SandboxRequest;
  /** The write-back boundary (null: nothing is written back, a read-only workspace). */
  boundary: string | null;
  /** The task has a proxy URL in its Secret (an allowlist). */
  proxy: boolean;
}

/** A command element Kubernetes passes on unchanged (no $(NAME) expansion). */
export function literal(arg: string): string {
  return arg.replace(/\$/g, '$$$$');
}

export function clusterImage(image: string, s: Pick<KubernetesJobSettings, 'images'>): string {
  return s.images[image] ?? image;
}

/**
 * The batch/v1 Job of one task. Pure: every security setting lives here and unit tests pin each
 * field. Created suspended; its pod waits at the stdin gate (gate.ts) until the server attaches.
 */
export function buildJob(input: JobInput, s: KubernetesJobSettings): V1Job {
  const { req } = input;
  const name = jobName(req.taskId);
  const labels = { ...(s.extraLabels ?? {}), ...ownLabels(s.serverId), [K8S_TASK]: name };
  const annotations: Record<string, string> = { [ANNOTATION_TASK_ID]: req.taskId };
  if (input.boundary) annotations[ANNOTATION_BOUNDARY] = input.boundary;
  const podDeadline = req.backstopSeconds + s.startAllowanceSeconds;
  const secretRef = (key: string): V1EnvVar['valueFrom'] => ({ secretKeyRef: { name, key } });
  const forced = new Set<string>(['HOME', ...(input.proxy ? PROXY_VARIABLES : [])]);
  const env: V1EnvVar[] = [
    ...Object.entries(req.env)
      .filter(([k]) => !forced.has(k) && !(k in (req.secretEnv ?? {})))
      .map(([k, v]) => ({ name: k, value: literal(v) })),
    ...Object.keys(req.secretEnv ?? {})
      .filter((k) => !forced.has(k))
      .map((k) => ({ name: k, valueFrom: secretRef(secretEnvKey(k)) })),
    ...(input.proxy ? PROXY_VARIABLES.map((k) => ({ name: k, valueFrom: secretRef(SECRET_PROXY_KEY) })) : []),
    { name: 'HOME', value: TASK_HOME },
  ];
  const memory = `${req.memoryMb}Mi`;
  const cpu = `${Math.round(req.cpus * 1000)}m`;
  const storage = `${s.workspaceMb}Mi`;
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { name, namespace: s.namespace, labels, annotations },
    spec: {
      suspend: true,
      backoffLimit: 0,
      podFailurePolicy: { rules: [{ action: 'FailJob', onExitCodes: { operator: 'NotIn', values: [0] } }] },
      activeDeadlineSeconds: podDeadline + s.startAllowanceSeconds,
      ttlSecondsAfterFinished: s.ttlSecondsAfterFinished,
      template: {
        metadata: { labels, annotations },
        spec: {
          restartPolicy: 'Never',
          activeDeadlineSeconds: podDeadline,
          terminationGracePeriodSeconds: s.graceSeconds,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          ...(s.runtimeClassName ? { runtimeClassName: s.runtimeClassName } : {}),
          ...(s.hostUsers ? {} : { hostUsers: false }),
          securityContext: {
            runAsNonRoot: true,
            runAsUser: POD_UID,
            runAsGroup: POD_UID,
            fsGroup: POD_UID,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: CONTAINER_NAME,
              image: clusterImage(req.image, s),
              workingDir: WORKSPACE_MOUNT,
              // Kubernetes expands $(NAME) in command and reduces $$ to $: every $ is doubled.
              command: ['/bin/sh', '-c', GATE_SCRIPT, 'sandboxshift-gate', req.command].map(literal),
              stdin: true,
              stdinOnce: true,
              tty: false,
              env,
              resources: {
                requests: { cpu, memory, 'ephemeral-storage': storage },
                limits: { cpu, memory, 'ephemeral-storage': storage },
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                privileged: false,
                runAsNonRoot: true,
                capabilities: { drop: ['ALL'] },
                seccompProfile: { type: 'RuntimeDefault' },
              },
              volumeMounts: [
                { name: 'workspace', mountPath: WORKSPACE_MOUNT },
                { name: 'tmp', mountPath: '/tmp' },
              ],
            },
          ],
          volumes: [
            { name: 'workspace', emptyDir: { sizeLimit: storage } },
            { name: 'tmp', emptyDir: { medium: 'Memory', sizeLimit: `${s.tmpfsMb}Mi` } },
          ],
        },
      },
    },
  };
}

/**
 * The task's Secret: its secret variables and proxy URL, owned by its Job (the garbage collector
 * removes it with the Job). Null when the task has neither.
 */
export function buildSecret(req: SandboxRequest, proxyUrl: string | null, owner: { name: string; uid: string }, s: Pick<KubernetesJobSettings, 'serverId' | 'namespace' | 'extraLabels'>): V1Secret | null {
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.secretEnv ?? {})) data[secretEnvKey(k)] = Buffer.from(v).toString('base64');
  if (proxyUrl) data[SECRET_PROXY_KEY] = Buffer.from(proxyUrl).toString('base64');
  if (Object.keys(data).length === 0) return null;
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type: 'Opaque',
    metadata: {
      name: owner.name,
      namespace: s.namespace,
      labels: { ...(s.extraLabels ?? {}), ...ownLabels(s.serverId), [K8S_TASK]: owner.name },
      ownerReferences: [{ apiVersion: 'batch/v1', kind: 'Job', name: owner.name, uid: owner.uid, controller: true, blockOwnerDeletion: true }],
    },
    data,
  };
}
