import { isIP } from 'node:net';
import { z } from 'zod';
import { TENANT_PATTERN } from '../auth/scope.js';
import { parseCidr } from '../egress/addresses.js';
import { listenAddress } from '../egress/listen-address.js';
import { resolveAllowlist } from '../egress/policy.js';
import { isHostEntry, isSerializedOrigin } from '../http/request-guard.js';

const MiB = 1024 * 1024;

/** A bounded integer with a description: every numeric field of the config is one. */
const int = (min: number, max: number, def: number, description: string) =>
  z.int().min(min).max(max).default(def).describe(`${description} (${min}..${max}, default ${def})`);

export const imageName = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[a-z0-9][a-z0-9._\/:@-]*$/, 'must be an image reference like sandboxshift/runtime-python:3.11');

/** A DNS-1123 label (namespace, RuntimeClass names). */
const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'must be a DNS-1123 label: lower-case letters, digits and "-"');

/** host:port with a literal IPv4 address or a host name (IPv6 in brackets). */
const hostPort = z
  .string()
  .min(3)
  .max(260)
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([1-9][0-9]{0,4})$/, 'must be host:port')
  .refine((v) => Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'port must be 1..65535');

const kubernetesEngine = z
  .strictObject({
    kubeconfig: z
      .string()
      .min(1)
      .max(1024)
      .nullable()
      .default(null)
      .describe("kubeconfig file of the cluster (relative paths resolve against the working directory); null: the pod's in-cluster service account"),
    namespace: dnsLabel.default('sandboxshift-tasks').describe('Namespace the task Jobs, pods and Secrets live in (the only one the server uses)'),
    runtimeClassName: dnsLabel
      .nullable()
      .default(null)
      .describe("RuntimeClass of every task pod (for example gvisor or kata); null: the cluster's default"),
    hostUsers: z.boolean().default(true).describe('false runs every task pod in its own user namespace (hostUsers: false; needs Kubernetes 1.33 or the feature gate, and runtime support)'),
    ttlSecondsAfterFinished: int(0, 7 * 86400, 900, 'Seconds after it finished that Kubernetes deletes a task Job the server did not delete itself'),
    maxWorkspaceBytes: int(0, 4096 * MiB, 256 * MiB, 'Largest workspace, as a tar, streamed into a task pod; a task whose workspace is larger does not start and its error names this bound'),
    podStartTimeoutSeconds: int(5, 3600, 300, "How long a task pod may take to be scheduled, pull its image and reach its stdin gate (the task's own timeout still counts)"),
    startAllowanceSeconds: int(0, 3600, 300, "Added to the pod's activeDeadlineSeconds backstop for scheduling and the image pull, and again to the Job's for queueing"),
    networkPolicyCheck: z
      .enum(['canary', 'trust'])
      .default('canary')
      .describe('canary: at start-up a pod under the default-deny NetworkPolicy tries to reach canaryTarget; if it can, tasks with an allowlist are refused (EGRESS_POLICY_UNENFORCED). trust: no test (the operator vouches for the network plugin; logged as a warning)'),
    canaryTarget: hostPort
      .refine((v) => isIP(v.startsWith('[') ? v.slice(1, v.indexOf(']')) : v.slice(0, v.lastIndexOf(':'))) !== 0, 'must be an IP address and port: task pods have no DNS')
      .nullable()
      .default(null)
      .describe('IP:port a task pod must not be able to reach (for example a node address or the API server; an address, since task pods have no DNS); required with networkPolicyCheck canary'),
    canaryImage: imageName.nullable().default(null).describe('Runtime image the canary pod runs (null: the default language image); it needs python3 or bash'),
    images: z
      .record(imageName, imageName)
      .refine((m) => Object.keys(m).length <= 64, 'at most 64 entries')
      .default({})
      .describe('The image the cluster pulls for each runtime image (for example sandboxshift/runtime-python:3.11 → registry.example/sandboxshift/runtime-python@sha256:…); an image not listed is pulled by its own name (at most 64)'),
  })
  .prefault({})
  .describe('The Kubernetes engine (engine.kind: kubernetes)');

/** An egress allowlist entry: a host name or `*.suffix` (checked fully by src/egress/policy.ts). */
/** How a task is isolated: runc (a container on the host kernel) or gvisor (runsc's user-space kernel). */
export const ISOLATIONS = ['runc', 'gvisor'] as const;
export type Isolation = (typeof ISOLATIONS)[number];
export const isolationName = z.enum(ISOLATIONS);

const allowEntry = z.string().min(1).max(253);

const language = z
  .string()
  .min(1)
  .max(32)
  .regex(/^[a-z][a-z0-9-]*$/, 'must be a lower-case language name');

const imageEntry = z
  .strictObject({
    image: imageName.describe('Image reference used for this language'),
    build: z.string().max(500).default('').describe('Command an operator runs to build the image when it is missing'),
  })
  .describe('One runtime image');

/**
 * The built-in image table. Names and build commands are
 * the registry (Chainguard/Wolfi) images of images/<name>/Dockerfile. A machine that builds
 * offline records the tags it really produces in <dataDir>/images.json (src/detection/record.ts),
 * which the server applies on top of this table: for example `sandboxshift/runtime-go:1.19`.
 * python, node and multi are the default images (/readyz needs them); the others are optional.
 */
export const DEFAULT_IMAGES = {
  languages: {
    python: { image: 'sandboxshift/runtime-python:3.11', build: 'make -C images build-python' },
    node: { image: 'sandboxshift/runtime-node:20', build: 'make -C images build-node' },
    go: { image: 'sandboxshift/runtime-go:1.22', build: 'make -C images build-go' },
    java: { image: 'sandboxshift/runtime-java:21', build: 'make -C images build-java' },
    rust: { image: 'sandboxshift/runtime-rust:latest', build: 'make -C images build-rust' },
  },
  multi: {
    image: 'sandboxshift/runtime-multi:latest',
    build: 'make -C images build-multi',
    languages: ['python', 'node'],
  },
  default: 'python',
  markers: {
    'requirements.txt': 'python',
    'pyproject.toml': 'python',
    'package.json': 'node',
    'go.mod': 'go',
    'Cargo.toml': 'rust',
    'pom.xml': 'java',
    'build.gradle': 'java',
  },
};

export const imagesSchema = z
  .strictObject({
    languages: z
      .record(language, imageEntry)
      .refine((r) => Object.keys(r).length >= 1 && Object.keys(r).length <= 32, 'must have 1..32 languages')
      .describe('Language name → runtime image'),
    multi: z
      .strictObject({
        image: imageName.describe('Image that carries several languages'),
        build: z.string().max(500).default('').describe('Command that builds the multi image'),
        languages: z.array(language).min(2).max(32).describe('Languages the multi image carries'),
      })
      .nullable()
      .describe('Image used when a workspace has markers of several languages it carries (null: none)'),
    default: language.describe('Language whose image runs workspaces without markers'),
    markers: z
      .record(
        z.string().min(1).max(255).regex(/^[^/\0]+$/, 'must be a file name in the workspace root'),
        language,
      )
      .refine((r) => Object.keys(r).length <= 64, 'must have at most 64 markers')
      .describe('Marker file in the workspace root → language'),
    requiredForReady: z
      .array(imageName)
      .max(32)
      .nullable()
      .default(null)
      .describe('Images /readyz requires (null: the default images: the default language image, the multi image and the images of the languages it carries)'),
  })
  .superRefine((v, ctx) => {
    const langs = new Set(Object.keys(v.languages));
    if (!langs.has(v.default)) {
      ctx.addIssue({ code: 'custom', path: ['default'], message: `language "${v.default}" is not in images.languages` });
    }
    for (const [marker, lang] of Object.entries(v.markers)) {
      if (!langs.has(lang)) {
        ctx.addIssue({ code: 'custom', path: ['markers', marker], message: `language "${lang}" is not in images.languages` });
      }
    }
    for (const [i, lang] of (v.multi?.languages ?? []).entries()) {
      if (!langs.has(lang)) {
        ctx.addIssue({ code: 'custom', path: ['multi', 'languages', i], message: `language "${lang}" is not in images.languages` });
      }
    }
  })
  .prefault(DEFAULT_IMAGES)
  .describe('Marker → language → image table');

const resources = (d: { cpus: number; memoryMb: number; pids: number; timeoutSeconds: number }, what: string) =>
  z
    .strictObject({
      cpus: z.number().min(0.1).max(64).default(d.cpus).describe(`${what} CPUs per task (0.1..64, default ${d.cpus})`),
      memoryMb: int(16, 262144, d.memoryMb, `${what} memory per task in MB (swap is set equal, so no swap)`),
      pids: int(16, 32768, d.pids, `${what} processes/threads per task (pids cgroup)`),
      timeoutSeconds: int(1, 86400, d.timeoutSeconds, `${what} wall-clock timeout per task in seconds`),
    })
    .prefault({});

/** A tenant name, as keys carry it (config `auth.keys` and `sandboxshift keys create`). */
export const TENANT_NAME = TENANT_PATTERN;
export const TENANT_NAME_RULE = 'lower-case letters, digits, "_" and "-", at most 63, starting with a letter or digit';

/** One API key of `auth.keys`: only the SHA-256 of the key is configured, never the key. */
const configuredKey = z
  .strictObject({
    id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, "_" and "-", at most 64').describe('Key id (shown in listings, task records and the audit log)'),
    tenant: z.string().regex(TENANT_NAME, TENANT_NAME_RULE).describe('Tenant the key acts for'),
    role: z.enum(['admin', 'user']).default('user').describe('admin sees every tenant; user only its own'),
    sha256: z.string().regex(/^[0-9a-f]{64}$/, 'hex SHA-256 of the whole key text, lower case').describe('SHA-256 of the key (`ssk_…`), hex'),
  })
  .describe('An API key, by hash');

/**
 * Per-tenant limits: `tenants.defaults` holds every field, `tenants.overrides.<tenant>` any of
 * them. [min, max, default, description] per field.
 */
const TENANT_LIMITS = {
  maxRunning: [1, 256, 256, "Tasks of one tenant running at once; more wait in the queue (queue.concurrency still bounds all tenants' together)"],
  maxQueued: [0, 100_000, 100, "Tasks of one tenant waiting to run; past it (and with its running and waiting tasks at maxRunning) the tenant's submissions get 429 TENANT_QUEUED_LIMIT"],
  workspaceBytes: [
    0,
    2 ** 50,
    2 ** 40,
    "Disk one tenant's workspaces may take, in bytes: the sum of their quotas (each workspace is a sparse image that may grow to workspaces.quotaMb), so a new workspace past it gets 413 TENANT_STORAGE_LIMIT",
  ],
  requestsPerMinute: [1, 1_000_000, 6000, 'Requests one tenant may make per minute (a burst of as many, refilled evenly); past it 429 RATE_LIMITED'],
} as const;

const tenantDefault = (k: keyof typeof TENANT_LIMITS) => {
  const [min, max, def, description] = TENANT_LIMITS[k];
  return int(min, max, def, description);
};
const tenantOverrideField = (k: keyof typeof TENANT_LIMITS) => {
  const [min, max, , description] = TENANT_LIMITS[k];
  return z.int().min(min).max(max).optional().describe(`${description} (${min}..${max}; default: tenants.defaults.${k})`);
};

const tenantDefaults = z
  .strictObject({
    maxRunning: tenantDefault('maxRunning'),
    maxQueued: tenantDefault('maxQueued'),
    workspaceBytes: tenantDefault('workspaceBytes'),
    requestsPerMinute: tenantDefault('requestsPerMinute'),
  })
  .prefault({})
  .describe('Limits of every tenant without an override');

const tenantOverride = z
  .strictObject({
    maxRunning: tenantOverrideField('maxRunning'),
    maxQueued: tenantOverrideField('maxQueued'),
    workspaceBytes: tenantOverrideField('workspaceBytes'),
    requestsPerMinute: tenantOverrideField('requestsPerMinute'),
  })
  .describe('Limits of one tenant; fields left out come from tenants.defaults');

export const configSchema = z
  .strictObject({
    auth: z
      .strictObject({
        keys: z
          .array(configuredKey)
          .max(1000)
          .default([])
          .refine((ks) => new Set(ks.map((k) => k.id)).size === ks.length, 'key ids must be unique')
          .refine((ks) => new Set(ks.map((k) => k.sha256)).size === ks.length, 'key hashes must be unique')
          .describe('API keys given by hash (at most 1000). With any key, every route but /healthz, /readyz and /openapi.json needs Authorization: Bearer <key>'),
      })
      .prefault({})
      .describe('Who may call the API'),
    tenants: z
      .strictObject({
        defaults: tenantDefaults,
        overrides: z
          .record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a tenant name'), tenantOverride)
          .refine((r) => Object.keys(r).length <= 1000, 'at most 1000 tenants')
          .default({})
          .describe('Tenant name → its own limits (at most 1000)'),
      })
      .prefault({})
      .describe('Per-tenant quotas and rate limits'),
    audit: z
      .strictObject({
        path: z
          .string()
          .min(1)
          .max(1024)
          .nullable()
          .default(null)
          .describe('The audit log: JSON lines, one hash-chained record each (null: <dataDir>/audit.jsonl; a relative path is resolved against the working directory)'),
        rotateBytes: int(64 * 1024, 4096 * MiB, 64 * MiB, 'Size in bytes past which the audit file is renamed to <path>.<first seq> and a new one begun; rotated files are kept and continue the chain'),
      })
      .prefault({})
      .describe('The append-only audit log (tasks, workspaces, egress decisions, authentication failures, keys, start-up)'),
    listen: z
      .strictObject({
        host: z.string().min(1).max(255).default('127.0.0.1').describe('Address the HTTP server binds'),
        port: int(0, 65535, 8080, 'TCP port of the HTTP server (0 picks a free one)'),
      })
      .prefault({})
      .describe('Where the API listens'),
    http: z
      .strictObject({
        allowedHosts: z
          .array(z.string().min(1).max(255).refine(isHostEntry, 'must be a lower-case host name or address without a port (IPv6 in brackets: [2001:db8::1])'))
          .max(64)
          .default([])
          .describe('Host names (besides the listen address, the address a connection arrives on and loopback names) that requests may carry in their Host header; others get 421 HOST_NOT_ALLOWED (DNS rebinding). Set the names clients use when listening on 0.0.0.0 or behind a reverse proxy (at most 64)'),
        allowedOrigins: z
          .array(z.string().min(1).max(300).refine(isSerializedOrigin, 'must be an origin: scheme://host[:port], http or https, lower case, no path or trailing slash'))
          .max(64)
          .default([])
          .describe("Web origins (besides the server's own) whose pages may call the API; any other Origin, and Sec-Fetch-Site cross-site/same-site, gets 403 ORIGIN_NOT_ALLOWED (at most 64, default none)"),
      })
      .prefault({})
      .describe('Checks of browser-facing headers, made on every request before any other work'),
    dataDir: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[^:,\0]+$/, 'must not contain ":" or "," (it becomes part of a bind-mount specification)')
      .default('.sandboxshift-data')
      .describe('Directory for the database, task logs, workspaces and the owned Podman socket (relative to the working directory)'),
    engine: z
      .strictObject({
        kind: z
          .enum(['podman', 'kubernetes'])
          .default('podman')
          .describe('Where tasks run: podman (containers on this host through the Podman API) or kubernetes (one Job per task on a cluster, see engine.kubernetes)'),
        kubernetes: kubernetesEngine,
        socket: z
          .string()
          .min(1)
          .max(1024)
          .nullable()
          .default(null)
          .describe('Podman API socket (unix path or unix:// URL). Null: CONTAINER_HOST/DOCKER_HOST if set, else the server starts its own Podman API service'),
        isolation: isolationName
          .default('runc')
          .describe('Isolation of tasks that ask for none: runc (containers on the host kernel) or gvisor (runsc, a user-space kernel between the task and the host); must be in allowedIsolation'),
        allowedIsolation: z
          .array(isolationName)
          .min(1)
          .max(2)
          .refine((l) => new Set(l).size === l.length, 'must not repeat a value')
          .default(['runc'])
          .describe('Isolations a task may ask for in its `isolation` field (any other: 422 ISOLATION_NOT_ALLOWED)'),
        gvisorSocket: z
          .string()
          .min(1)
          .max(1024)
          .nullable()
          .default(null)
          .describe('Podman API socket whose default OCI runtime is deploy/gvisor/runsc, used to create gVisor tasks (Podman 4.3 takes no per-container runtime over its API). Null: the server starts its own such service when allowedIsolation lists gvisor'),
        podmanBinary: z.string().min(1).max(1024).default('podman').describe('podman executable used to start an owned API service'),
        startTimeoutSeconds: int(1, 300, 30, 'How long to wait for an owned Podman API service to answer'),
        readinessImage: imageName
          .nullable()
          .default(null)
          .describe('Image used to prove at start-up that a hardened container starts (null: the default language image)'),
      })
      .prefault({})
      .refine((e) => e.allowedIsolation.includes(e.isolation), { message: 'engine.isolation must be one of engine.allowedIsolation', path: ['isolation'] })
      .refine((e) => e.kind !== 'kubernetes' || e.allowedIsolation.every((i) => i === 'runc'), {
        message: 'on Kubernetes the isolation is the pod RuntimeClass (engine.kubernetes.runtimeClassName): engine.allowedIsolation must be ["runc"]',
        path: ['allowedIsolation'],
      })
      .refine((e) => e.kind !== 'kubernetes' || e.kubernetes.networkPolicyCheck !== 'canary' || e.kubernetes.canaryTarget !== null, {
        message: 'engine.kubernetes.canaryTarget is required when networkPolicyCheck is canary (an address task pods must not reach)',
        path: ['kubernetes', 'canaryTarget'],
      })
      .describe('Container engine'),
    images: imagesSchema,
    defaults: resources({ cpus: 1, memoryMb: 512, pids: 256, timeoutSeconds: 300 }, 'Default').describe(
      'Limits a task gets when it asks for none',
    ),
    maxima: resources({ cpus: 2, memoryMb: 4096, pids: 1024, timeoutSeconds: 3600 }, 'Maximum').describe(
      'Largest limits a task may ask for; a request above one is refused with LIMIT_ABOVE_MAXIMUM',
    ),
    tasks: z
      .strictObject({
        caBundle: z
          .string()
          .min(1)
          .max(1024)
          .regex(/^[^:,\0]+$/, 'must not contain ":" or "," (it becomes part of a bind-mount specification)')
          .nullable()
          .default(null)
          .describe('PEM file of extra CA certificates (certificates only, at most 4 MiB) that tasks and git intake trust besides the public CAs: mounted read-only at /run/sandboxshift/ca.pem, with SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, PIP_CERT, npm_config_cafile, CURL_CA_BUNDLE and GIT_SSL_CAINFO pointing at it (null: none)'),
        publicCaFile: z
          .string()
          .min(1)
          .max(1024)
          .default('/etc/ssl/certs/ca-certificates.crt')
          .describe('The host\'s public CA bundle, put before the caBundle certificates (Debian package ca-certificates)'),
      })
      .prefault({})
      .describe('What every task gets from the host'),
    sandbox: z
      .strictObject({
        tmpfsMb: int(1, 4096, 64, 'Size of each tmpfs (/tmp, /run, /var/tmp) in MB'),
        nofile: int(64, 20000, 1024, 'Open files per process inside a task (RLIMIT_NOFILE)'),
        nproc: int(1024, 32768, 32768, 'RLIMIT_NPROC (counted per host UID across all tasks, so it must stay far above pids; Podman itself caps it at 32768 here)'),
        stopGraceSeconds: int(0, 60, 2, 'Seconds between SIGTERM and SIGKILL when a task is stopped'),
        backstopSeconds: int(1, 3600, 5, "The engine stops a task's container this many seconds after the task's own deadline, even while no server runs"),
        engineLogMb: int(1, 4096, 64, "Bound of the engine's own log of a container's output (read by the server, removed with the container), in MB"),
        seccompProfile: z
          .string()
          .min(1)
          .max(1024)
          .default('deploy/seccomp.json')
          .describe('Seccomp profile (path on the engine host; relative paths resolve against the install directory)'),
        userNamespaces: z
          .strictObject({
            enabled: z
              .boolean()
              .default(true)
              .describe('Give each task a user namespace mapping its user to a host UID of its own, so per-user kernel counters are not shared between tasks (false: every task is host UID 65532)'),
            firstHostUid: int(65536, 2 ** 32 - 1 - 65536, 0x70000000, 'First host UID of the range this server owns: slot k maps container UIDs 0-65535 to firstHostUid + k × 65536 onwards (servers sharing a host need ranges that do not overlap)'),
            slots: int(1, 16384, 1024, 'Slots of 65536 host UIDs in the range: at least queue.concurrency, one per task that has a container; pre-started pool members hold slots beyond those (none is started while queue.concurrency or fewer are free)'),
          })
          .prefault({})
          .describe('Per-task host UIDs'),
        secretsDir: z
          .string()
          .regex(/^\/[A-Za-z0-9._\/-]{1,255}$/, 'an absolute path')
          .default('/dev/shm/sandboxshift-secrets')
          .describe("Directory on a host tmpfs (memory only) where a task's secretEnv is written, root-only, for its container's wrapper to read through a read-only bind mount; removed with the container"),
      })
      .prefault({})
      .describe('Container hardening settings'),
    output: z
      .strictObject({
        headBytes: int(1024, 1024 * MiB, 8 * MiB, 'Bytes of each stream kept from the start and sent live'),
        tailBytes: int(0, 256 * MiB, 8 * MiB, 'Bytes of each stream kept from the end once the head is full'),
        frameBytes: int(256, 1024 * 1024, 64 * 1024, 'Largest data payload of one output frame in bytes'),
        subscriberBacklogBytes: int(64 * 1024, 1024 * MiB, 16 * MiB, 'Unsent log bytes past which a stalled WebSocket subscriber (nothing drained for 2 s) is closed with 4008'),
      })
      .prefault({})
      .describe('Output capture'),
    shutdown: z
      .strictObject({
        leaveRunning: z
          .boolean()
          .default(true)
          .describe('On SIGTERM/SIGINT leave running tasks running (with their workspace and egress) for the next start to adopt; false stops them'),
        retryAfterSeconds: int(1, 3600, 10, 'Retry-After sent with 503 SHUTTING_DOWN'),
      })
      .prefault({})
      .describe('Graceful shutdown'),
    pool: z
      .strictObject({
        size: int(0, 32, 2, 'Pre-started sandboxes of the default shape (default image and limits, no network); 0 disables'),
        shapes: z
          .array(
            z.strictObject({
              image: z.string().min(1).max(256).describe('Image of the shape'),
              cpus: z.number().min(0.1).max(64).describe('CPUs of the shape'),
              memoryMb: z.number().int().min(16).max(262144).describe('Memory of the shape in MB'),
              pids: z.number().int().min(16).max(32768).describe('Processes of the shape'),
              size: z.number().int().min(0).max(32).describe('Pre-started sandboxes of this shape'),
            }),
          )
          .max(8)
          .default([])
          .describe('Further shapes (no network) with pre-started sandboxes'),
        maxIdleSeconds: int(10, 86400, 600, 'A pre-started sandbox idle this long is replaced (its engine backstop counts from its own start)'),
      })
      .prefault({})
      .describe('Warm pool: tasks whose image, limits and network mode match get a pre-started sandbox instead of a new one'),
    queue: z
      .strictObject({
        concurrency: int(1, 256, 2, 'Tasks running at once'),
        maxQueued: int(0, 100_000, 100, 'Tasks waiting to run; past it submissions get 429'),
        retryAfterSeconds: int(1, 3600, 5, 'Retry-After sent with 429'),
      })
      .prefault({})
      .describe('Admission'),
    requests: z
      .strictObject({
        bodyBytes: int(1024, 1024 * MiB, 16 * MiB, 'Largest request body in bytes'),
        commandBytes: int(1, 128 * 1024, 64 * 1024, 'Largest command in bytes (the kernel caps one argument at 128 KiB)'),
        envEntries: int(0, 1024, 128, 'Most environment variables per task'),
        envValueBytes: int(1, 128 * 1024, 32 * 1024, 'Largest environment value in bytes'),
        secretEntries: int(0, 256, 32, 'Most secretEnv variables per task'),
        secretValueBytes: int(1, 64 * 1024, 4096, 'Largest secretEnv value in bytes (every value is looked for in all of the task\'s output)'),
        stdinBytes: int(0, 1024 * MiB, 64 * MiB, 'Most stdin bytes accepted per task'),
        listLimit: int(1, 1000, 100, 'Largest page of GET /v1/tasks'),
        bodyTimeoutSeconds: int(1, 3600, 120, 'Time a client has to send a whole request body (JSON, archive or multipart); past it the request is answered 408 BODY_TIMEOUT and nothing it started is kept'),
        maxStreams: int(1, 100_000, 512, 'Live streams (WebSockets and followed logs) open at once, across all tasks'),
        authFailuresPerMinute: int(1, 100_000, 30, 'Failed authentications (401) one client address may have per minute (a burst of as many, refilled evenly); past it every request from that address gets 429 RATE_LIMITED'),
      })
      .prefault({})
      .describe('Request bounds'),
    workspaces: z
      .strictObject({
        maxFiles: int(0, 100_000, 10_000, 'Most files in an inline workspace'),
        maxBytes: int(0, 1024 * MiB, 64 * MiB, 'Most bytes in an inline workspace'),
        maxDepth: int(1, 256, 64, 'Deepest path nesting'),
        maxPathBytes: int(1, 4096, 4096, 'Longest relative path in bytes'),
        // Storage, quota, lifecycle and the per-workspace sandboxshift.yaml.
        quotaMb: int(8, 1024 * 1024, 1024, 'Disk quota of each workspace in MiB: every workspace is its own sparse ext4 image of this size, so a task writing past it gets ENOSPC'),
        ttlSeconds: int(1, 10 * 365 * 86400, 7 * 86400, 'Seconds after its last use (task or read-back) that an idle workspace is removed'),
        ephemeralTtlSeconds: int(1, 10 * 365 * 86400, 3600, 'Seconds after its last use that a workspace created for a single task (none given, inline files, or a multipart archive) is removed, unless a later task names it'),
        sweepIntervalSeconds: int(1, 86400, 300, 'How often expired workspaces are looked for'),
        projectFileBytes: int(64, 1024 * 1024, 64 * 1024, 'Largest sandboxshift.yaml read from a workspace root'),
        readbackIdleSeconds: int(1, 3600, 60, 'A read-back (archive or file) whose client takes nothing for this long is cut off, so a stalled client cannot hold a workspace mounted'),
        // Workspace intake (archives, git, host roots): src/workspace/intake/.
        archive: z
          .strictObject({
            maxCompressedBytes: int(1024, 16 * 1024 * MiB, 100 * MiB, 'Largest archive body (tar, tar.gz, zip, or the multipart workspace part) in bytes'),
            maxExpandedBytes: int(0, 64 * 1024 * MiB, 1024 * MiB, 'Most bytes an archive, git checkout or host-root copy may expand to (file contents actually written)'),
            maxEntries: int(1, 10_000_000, 100_000, 'Most entries (files, directories, links) in an archive, git checkout or host-root copy'),
            maxCompressionRatio: int(2, 100_000, 200, 'Largest expanded/compressed ratio, checked once ratioGraceBytes have expanded (gzip or zip bombs)'),
            ratioGraceBytes: int(0, 1024 * MiB, 16 * MiB, 'Expanded bytes below which the compression ratio is not checked'),
          })
          .prefault({})
          .describe('Archive intake limits (also bound git checkouts and host-root copies)'),
        git: z
          .strictObject({
            allowedHosts: z
              .array(z.string().min(1).max(253).regex(/^[a-z0-9.-]+$/, 'must be a lower-case host name'))
              .max(1000)
              .default([])
              .describe('Hosts a workspace may be cloned from (empty: git intake is refused)'),
            plainHttpHosts: z
              .array(z.string().min(1).max(253).regex(/^[a-z0-9.-]+$/, 'must be a lower-case host name'))
              .max(100)
              .default([])
              .describe('Test hosts that may be cloned over plain http (all others need https)'),
            ports: z.array(z.int().min(1).max(65535)).max(16).default([80, 443]).describe('Ports a git URL may name'),
            timeoutSeconds: int(1, 3600, 120, 'Wall-clock limit of one clone; the git process group is killed past it'),
            maxBytes: int(1024, 64 * 1024 * MiB, 1024 * MiB, 'Most bytes the clone (objects and checkout) may occupy'),
            binary: z.string().min(1).max(1024).default('git').describe('git executable'),
          })
          .prefault({})
          .describe('Workspaces cloned from git'),
        hostRoots: z
          .record(
            z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/, 'must be a simple name'),
            z.string().min(2).max(1024).regex(/^\/[^\0]*$/, 'must be an absolute path'),
          )
          .refine((r) => Object.keys(r).length <= 64, 'must have at most 64 roots')
          .default({})
          .describe('Host directories workspaces may be copied from: name → absolute path; {"hostPath": "<name>/<dir>"}'),
      })
      .prefault({})
      .describe('Workspace bounds'),
    retention: z
      .strictObject({
        taskDays: int(1, 3650, 30, 'Days after it finished that a task record, its log directory and its egress decisions are removed (queued and running tasks are never removed)'),
        sweepIntervalSeconds: int(1, 86400, 3600, 'How often finished tasks past retention.taskDays are looked for'),
      })
      .prefault({})
      .describe('Retention of finished tasks'),
    egress: z
      .strictObject({
        testHosts: z
          .record(
            z.string().min(1).max(253).regex(/^[a-z0-9.-]+$/, 'must be a lower-case host name'),
            z.array(z.ipv4().or(z.ipv6())).min(1).max(16),
          )
          .default({})
          .refine((r) => Object.keys(r).length <= 1000, 'at most 1000 entries')
          .describe('Test-only resolver table: host name → addresses, consulted before DNS (for tests that serve on loopback)'),
        allowPrivateRanges: z
          .array(z.string().max(64).refine((v) => parseCidr(v) !== null, 'must be an address or CIDR range'))
          .max(64)
          .default([])
          .describe('Address ranges (CIDR) exempt from the refusal of loopback/private/link-local/metadata destinations; for tests only'),
        defaultAllow: z
          .array(allowEntry)
          .max(256)
          .default([])
          .describe('Allowlist of tasks whose request and workspace file give none (empty: no network)'),
        ceiling: z
          .array(allowEntry)
          .max(1024)
          .nullable()
          .default(null)
          .describe('Patterns any task may ask for; an entry outside them is refused with EGRESS_OUTSIDE_CEILING (null: no ceiling)'),
        allowUnrestricted: z
          .boolean()
          .default(false)
          .describe('Accept over-broad patterns (*, *.com, *.co.uk); a task using one records network.unrestricted = true'),
        ports: z
          .array(z.int().min(1).max(65535))
          .min(1)
          .max(64)
          .default([80, 443])
          .describe('Destination ports the egress proxy connects to (1..65535, at most 64, default [80, 443])'),
        relayPort: int(1, 65535, 3128, 'Port of the proxy inside a task (the relay listens on 127.0.0.1 there)'),
        maxConnectionsPerTask: int(1, 4096, 64, 'Proxy connections open at once per task; more are answered 503'),
        idleTimeoutSeconds: int(1, 3600, 60, 'A proxy connection with no bytes either way for this long is closed'),
        headerTimeoutSeconds: int(1, 300, 10, 'Time a client has to send its request head to the proxy'),
        connectTimeoutSeconds: int(1, 120, 10, 'Time the proxy gives name resolution and the upstream connect'),
        maxHeaderBytes: int(1024, 65536, 16384, 'Largest request head the proxy reads (431 beyond)'),
        maxDecisionsPerTask: int(0, 100_000, 1000, 'Egress decisions stored per task (later ones are counted as dropped and still logged)'),
        upstreamProxy: z
          .strictObject({
            url: z
              .string()
              .max(1024)
              .regex(/^http:\/\/[^/@\s]+(:\d{1,5})?\/?$/, 'must be http://host:port (credentials go in credentialsFile)')
              .describe('The upstream proxy, http://host:port'),
            credentialsFile: z
              .string()
              .min(1)
              .max(1024)
              .nullable()
              .default(null)
              .describe('File holding one line user:password for the upstream (Basic auth); null: none'),
          })
          .nullable()
          .default(null)
          .describe('An upstream (corporate) HTTP proxy: after its own checks the egress proxy sends CONNECT by name and absolute-URI HTTP requests to it, and git intake uses it; the address policy then holds only where local DNS answers (null: connect directly)'),
        tcp: z
          .strictObject({
            listen: z
              .string()
              .max(64)
              .refine((v) => listenAddress(v) !== null, 'must be IP:port or [IPv6]:port, e.g. 0.0.0.0:3128')
              .nullable()
              .default(null)
              .describe('Address and port of the TCP listener tasks reach over the network with per-task credentials (Kubernetes pods), e.g. 0.0.0.0:3128 (null: no TCP listener)'),
            advertiseUrl: z
              .string()
              .max(1024)
              .regex(/^http:\/\/[^/@\s]+(:\d{1,5})?\/?$/, 'must be http://host:port')
              .nullable()
              .default(null)
              .describe('The proxy URL tasks are given (with their credentials added), e.g. http://sandboxshift-egress.sandboxshift-system.svc:3128; a host name is resolved once when the listener starts and tasks get the address, since task pods have no DNS (null: http://<listen>, which needs a concrete listen address)'),
            maxPendingConnections: int(1, 65536, 256, 'Connections to the TCP listener that have not yet sent a complete request head, at most; more are answered 503'),
          })
          .superRefine((t, ctx) => {
            const a = t.listen === null ? null : listenAddress(t.listen);
            if (a && t.advertiseUrl === null && (a.host === '0.0.0.0' || a.host === '::')) {
              ctx.addIssue({ code: 'custom', path: ['advertiseUrl'], message: `must be set when listen binds every interface (${t.listen}): pods need a name or address that reaches it` });
            }
          })
          .prefault({})
          .describe("The egress proxy's TCP listener with per-task credentials (for tasks that run outside this host's sockets)"),
      })
      .superRefine((e, ctx) => {
        // The server's own lists obey the rules it applies to requests.
        try {
          resolveAllowlist({ serverDefault: e.defaultAllow }, e);
        } catch (err) {
          ctx.addIssue({ code: 'custom', path: ['defaultAllow'], message: (err as Error).message });
        }
        if (e.ceiling) {
          try {
            resolveAllowlist({ serverDefault: e.ceiling }, { ceiling: null, allowUnrestricted: true });
          } catch (err) {
            ctx.addIssue({ code: 'custom', path: ['ceiling'], message: (err as Error).message });
          }
        }
      })
      .prefault({})
      .describe('Egress: allowlist policy, the per-task egress proxy, and the destination policy shared with git intake'),
  })
  .superRefine((c, ctx) => {
    // RLIMIT_NPROC counts every process of UID 65532 on the host, across all tasks: if the tasks
    // running at once could together reach it, one task's fork bomb would starve the others.
    if (c.queue.concurrency * c.maxima.pids >= c.sandbox.nproc) {
      ctx.addIssue({
        code: 'custom',
        path: ['sandbox', 'nproc'],
        message: `must exceed queue.concurrency × maxima.pids (${c.queue.concurrency} × ${c.maxima.pids}) so that the pids cgroup, not RLIMIT_NPROC, bounds each task`,
      });
    }
    const uns = c.sandbox.userNamespaces;
    if (uns.enabled && uns.firstHostUid + uns.slots * 65536 > 2 ** 32 - 1) {
      ctx.addIssue({ code: 'custom', path: ['sandbox', 'userNamespaces', 'slots'], message: `firstHostUid + slots × 65536 must stay below ${2 ** 32 - 1}` });
    }
    if (uns.enabled && uns.slots < c.queue.concurrency) {
      ctx.addIssue({ code: 'custom', path: ['sandbox', 'userNamespaces', 'slots'], message: `must be at least queue.concurrency (${c.queue.concurrency}): one slot per running task` });
    }
    for (const k of ['cpus', 'memoryMb', 'pids', 'timeoutSeconds'] as const) {
      if (c.defaults[k] > c.maxima[k]) {
        ctx.addIssue({ code: 'custom', path: ['defaults', k], message: `default ${c.defaults[k]} is above maxima.${k} ${c.maxima[k]}` });
      }
    }
  })
  .describe('sandboxshift.yaml');

export type Config = z.infer<typeof configSchema>;
export type ImagesConfig = z.infer<typeof imagesSchema>;
