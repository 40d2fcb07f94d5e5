import { z } from 'zod';
import { isolationName } from '../config/schema.js';
import { ERRORS, type ErrorCode } from '../errors.js';
import type { ReadinessReport } from '../readiness.js';
import type { Store } from '../store/sqlite.js';
import type { Frame } from '../streaming/frames.js';
import type { publicTask } from '../tasks/model.js';
import type { workspaceView } from './workspaces.js';

/**
 * Zod schemas for every body the server sends. openapi.ts turns them
 * into the components of the OpenAPI document; the type assertions at the end of this file keep
 * them in step with the values the routes actually build, so a field added to a task, a workspace
 * or the readiness report fails `tsc` here until its schema is updated (and then the openapi unit
 * test until openapi.yaml is regenerated).
 *
 * Objects are strict: they describe exactly what the server sends today.
 */

const isoTime = z.iso.datetime().describe('UTC timestamp (ISO 8601, as produced by Date.prototype.toISOString)');
const count = z.int().min(0);

export const taskId = z.string().regex(/^tsk_[A-Za-z0-9_-]{1,64}$/).describe('Task id');
export const workspaceId = z.string().regex(/^ws_[A-Za-z0-9_-]{1,64}$/).describe('Workspace id');

export const taskStatus = z
  .enum(['queued', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'error'])
  .describe(
    '`succeeded`/`failed`: the command ran and exited 0 / otherwise; `timed_out` and `cancelled`: the server stopped it; `error`: the server could not run it or lost it',
  );

export const terminalStatus = z
  .enum(['succeeded', 'failed', 'timed_out', 'cancelled', 'error'])
  .describe('A final task status');

export const taskReason = z
  .enum(['timeout', 'oom', 'disk_quota', 'cancelled', 'engine_error', 'image_missing', 'lost'])
  .nullable()
  .describe(
    'Why the task ended as it did: `oom` (failed, and the OOM killer acted in it: memory limit), `disk_quota` (failed: it filled its workspace quota), `timeout` (timed_out), `cancelled` (cancelled), `engine_error`, `image_missing` or `lost` (error); null otherwise',
  );

export const imageChoice = z
  .strictObject({
    name: z.string().min(1).describe('The image the task runs in'),
    markers: z.array(z.string()).describe('Marker files found in the workspace root at submit time'),
  })
  .describe('The image chosen at submit time and the markers that chose it');

/** GET /v1/tasks/:id, the items of GET /v1/tasks, POST /v1/tasks/:id/cancel: `publicTask()`. */
export const taskView = z
  .strictObject({
    id: taskId,
    tenant: z.string().describe('The tenant that submitted the task'),
    keyId: z.string().nullable().describe('Id of the API key the task was submitted with (null on a server without keys)'),
    status: taskStatus,
    command: z.string().describe('The command, run as `/bin/sh -c <command>`'),
    setup: z.string().nullable().describe("sandbox.setup from the workspace's sandboxshift.yaml; the task runs `setup && command` (null: none)"),
    fromProjectFile: z.array(z.string()).describe("Keys of the workspace's sandboxshift.yaml whose values the task took because the request did not set them"),
    image: imageChoice,
    workspaceId,
    workspaceReadonly: z.boolean().describe('The workspace is mounted read-only'),
    createdAt: isoTime,
    startedAt: isoTime.nullable().describe('When the container was started (null while queued, or if it never ran)'),
    finishedAt: isoTime.nullable().describe('When the task reached its final status'),
    durationMs: count.nullable().describe('Milliseconds from start to finish; null unless the task started and finished'),
    exitCode: z.int().nullable().describe("The container's exit code whenever the container ran (137 after a kill), else null"),
    oomKills: count.describe(
      "Processes the kernel OOM killer killed in the task's memory cgroup (PID 1 or any child), whatever the exit code; 0 until the task ends. A non-zero exit with kills has reason `oom`",
    ),
    isolation: isolationName.describe('The runtime that runs (ran) the task: runc, or gvisor (runsc)'),
    reason: taskReason,
    error: z.string().nullable().describe('What went wrong on the server side when the status is error (or the sandbox never started); null otherwise'),
    output: z
      .strictObject({
        stdoutBytes: count.describe('Bytes the command wrote to stdout (produced, not kept)'),
        stderrBytes: count.describe('Bytes the command wrote to stderr (produced, not kept)'),
        truncated: z.boolean().describe('True when output was dropped between the kept head and tail'),
      })
      .describe('Output counters'),
    resources: z
      .strictObject({
        cpus: z.number().describe('CPUs'),
        memoryMb: count.describe('Memory limit in MB (no swap)'),
        pids: count.describe('Process/thread limit'),
      })
      .describe('The limits the task runs with (request or server defaults)'),
    timeoutSeconds: count.describe('Wall-clock limit in seconds'),
    stdin: z.boolean().describe('The task accepts stdin frames over the WebSocket stream'),
    network: z
      .strictObject({
        allow: z.array(z.string()).describe('Egress allowlist'),
        unrestricted: z.boolean().describe('True when egress is not filtered'),
      })
      .describe('Network access of the task'),
    envKeys: z.array(z.string()).describe('Names of the environment variables given at submit (values are never served back), sorted'),
    secretEnvKeys: z.array(z.string()).describe('Names of the secretEnv variables given at submit (values are never served, logged or stored unencrypted), sorted'),
    notes: z
      .array(z.string().max(500))
      .max(16)
      .describe(
        'What the engine could not do as asked, one sentence each (at most 16): on Kubernetes that resources.pids is not enforced per pod, that part of the output was recovered from pods/log with stdout and stderr combined, or that the workspace was not written back; empty on Podman',
      ),
  })
  .describe('A task');

export const taskLinks = z
  .strictObject({
    self: z.string().describe('GET: the task'),
    stream: z.string().describe('WebSocket: live frames'),
    logs: z.string().describe('GET: recorded output'),
  })
  .describe('Paths relative to the server');

/** POST /v1/tasks → 202. */
export const submitAccepted = z
  .strictObject({
    id: taskId,
    status: z.literal('queued'),
    image: imageChoice,
    workspaceId,
    createdAt: isoTime,
    links: taskLinks,
  })
  .describe('The accepted task, as it was accepted');

/** GET /v1/tasks. */
export const taskList = z
  .strictObject({
    tasks: z.array(taskView).describe('Newest first'),
    nextCursor: z.string().nullable().describe('Pass as `cursor` for the next page; null on the last page'),
  })
  .describe('A page of tasks');

/** POST /v1/workspaces → 201, GET /v1/workspaces/:id: `workspaceView()`. */
export const workspaceViewSchema = z
  .strictObject({
    id: workspaceId,
    tenant: z.string().describe('The tenant that created the workspace'),
    files: count.describe('Number of regular files (at creation, then after each task)'),
    bytes: count.describe('Total bytes of regular file content (at creation, then after each task)'),
    image: z
      .strictObject({
        name: z.string().nullable().describe('The image `"auto"` would choose; null when the markers need an explicit image'),
        markers: z.array(z.string()).describe('Marker files in the workspace root'),
      })
      .describe('Image detection for this workspace'),
    createdAt: isoTime,
    lastUsedAt: isoTime.describe('Last task, intake or read-back on the workspace'),
    ephemeral: z
      .boolean()
      .describe('Created for a single task (no workspace, inline files, or a multipart archive): it expires workspaces.ephemeralTtlSeconds after its last use; a later task that names it by id makes it regular (false)'),
    expiresAt: isoTime.describe('When the TTL sweep may remove it if it stays unused (lastUsedAt + workspaces.ttlSeconds, or + workspaces.ephemeralTtlSeconds when ephemeral)'),
    usage: z
      .strictObject({
        usedBytes: count.describe("Bytes in use on the workspace's own filesystem (statfs), refreshed after each task"),
        quotaBytes: count.describe('The disk quota: a task writing past it gets ENOSPC and ends failed with reason disk_quota'),
      })
      .describe('Disk usage'),
  })
  .describe('A workspace');

/** GET /v1/workspaces. */
export const workspaceList = z
  .strictObject({
    workspaces: z.array(workspaceViewSchema).describe('Newest first'),
    nextCursor: z.string().nullable().describe('Pass as `cursor` for the next page; null on the last page'),
  })
  .describe('A page of workspaces');

/** GET /v1/tasks/:id/egress. */
export const egressDecision = z
  .strictObject({
    time: isoTime,
    host: z.string().describe('The host name the task asked for, as the proxy normalised it'),
    port: z.int().min(1).max(65535),
    allowed: z.boolean(),
    reason: z
      .string()
      .describe(
        '`allowlisted`, or why not: `not_allowlisted`, `port_not_allowed`, `ip_literal`, `invalid_host`, `host_mismatch` (an absolute-URI request whose Host names another host or port), `forbidden_address:<category>` (e.g. loopback, private, link_local, local_interface), `resolve_failed`, `connect_failed`, `sni_mismatch` (the TLS ClientHello after CONNECT names another host), `sni_missing` (on port 443: no SNI, not TLS, malformed or too slow), `upstream_refused:<status>`, `upstream_unreachable` (the upstream proxy refused or did not answer)',
      ),
    address: z.string().nullable().describe('The address connected to (allowed) or refused (forbidden_address); null otherwise'),
    bytesUp: count.describe('Bytes from the task towards the destination (final once the connection closed)'),
    bytesDown: count.describe('Bytes from the destination to the task'),
  })
  .describe('One egress decision of the proxy');

export const egressReport = z
  .strictObject({
    decisions: z.array(egressDecision).describe('In the order they were made'),
    dropped: count.describe('Decisions past the per-task bound (egress.maxDecisionsPerTask), not stored'),
  })
  .describe("A task's egress decisions");

const errorCodes = Object.keys(ERRORS) as [ErrorCode, ...ErrorCode[]];

export const errorCode = z.enum(errorCodes).describe('Stable error code; each has one HTTP status (see x-error-codes on each response)');

const errorDetails = z.record(z.string(), z.unknown()).describe('Specifics of this error (which field, which bound, ...)');

/** Every error response: `AppError.toJSON()`. */
export const errorEnvelope = z
  .strictObject({
    error: z.strictObject({
      code: errorCode,
      message: z.string().describe('Human-readable explanation'),
      details: errorDetails.optional(),
    }),
  })
  .describe('An error');

/** GET /healthz. */
export const healthz = z.strictObject({ status: z.literal('ok') }).describe('The process is up');

/** GET /readyz (200 when ready, 503 with the same body when not). */
export const readinessReport = z
  .strictObject({
    ready: z.boolean(),
    engine: z.strictObject({
      reachable: z.boolean().describe('The Podman API answered a ping'),
      canStartContainer: z.boolean().describe('A hardened probe container started and printed the sandbox uid'),
      error: z.string().nullable().describe('Why not, when not'),
      checkedAt: isoTime.nullable().describe('When the probe container last ran (null: never)'),
    }),
    images: z.array(
      z.strictObject({
        name: z.string(),
        present: z.boolean(),
        required: z.boolean().describe('Readiness needs this image'),
        build: z.string().describe('Command an operator runs to build it'),
      }),
    ),
    runtime: z
      .strictObject({
        podman: z.string().nullable().describe('Podman version (null: the engine did not answer)'),
        runc: z.string().nullable().describe("runc version, such as 1.1.5+ds1 (null: the engine did not answer or its default runtime is not runc)"),
        runcPackage: z.string().nullable().describe('Distribution package of that runc, such as runc_1.1.5+ds1-1+deb12u1_amd64, when the engine names one'),
        runsc: z.string().nullable().describe('Installed gVisor runsc version (null: none known to the engine)'),
        kernel: z.string().describe('Host kernel release'),
        warnings: z
          .array(z.string())
          .describe(
            'Problems with these versions; a runc without the fixes for CVE-2025-31133, CVE-2025-52565 and CVE-2025-52881 (runc 1.2.8, 1.3.3, 1.4.0-rc.3, or a distribution build whose changelog names all three) is one. Warnings do not affect `ready`',
          ),
      })
      .describe('Engine, OCI runtime and kernel versions; logged at start-up'),
    isolation: z
      .array(
        z.strictObject({
          name: isolationName,
          default: z.boolean().describe("This is engine.isolation (tasks that ask for none); only this one's probe decides `ready`"),
          canStartContainer: z.boolean().describe('A hardened probe container of this isolation started and printed the sandbox uid'),
          error: z.string().nullable().describe('Why not, when not (for gvisor: runsc not installed, its Podman API service not answering, or the probe failing)'),
          checkedAt: isoTime.nullable().describe('When the probe container of this isolation last ran (null: never)'),
        }),
      )
      .describe('Every isolation engine.allowedIsolation lists. Tasks asking for one that cannot start a container get 503 ISOLATION_UNAVAILABLE'),
    networkPolicy: z
      .strictObject({
        check: z.enum(['canary', 'trust']).describe('engine.kubernetes.networkPolicyCheck'),
        enforced: z.boolean().nullable().describe('false: the canary pod reached its target, so the cluster ignores NetworkPolicy; null: not known (not tested, or the test could not run)'),
        error: z.string().nullable().describe('Why tasks with an allowlist are refused with 503 EGRESS_POLICY_UNENFORCED, or null'),
        checkedAt: isoTime.nullable().describe('When the canary ran (null: never)'),
      })
      .optional()
      .describe('Kubernetes engine only: the NetworkPolicy self-test of start-up. Does not affect `ready` (tasks without an allowlist run either way)'),
  })
  .describe('Readiness: engine reachable, a hardened container starts, required images present; runtime versions and their warnings');

const seq = z.int().min(1).describe('Starts at 1 for each task and increases by one per frame');

export const statusFrame = z
  .strictObject({ type: z.literal('status'), seq, status: taskStatus })
  .describe('A status change: `queued` is always frame 1, then `running`');

export const outputFrame = z
  .strictObject({
    type: z.enum(['stdout', 'stderr']),
    seq,
    data: z.string().describe('UTF-8 text; a character split across reads is never broken; invalid bytes become U+FFFD'),
  })
  .describe('Output of one stream');

export const gapFrame = z
  .strictObject({
    type: z.literal('gap'),
    seq,
    stream: z.enum(['stdout', 'stderr']),
    droppedBytes: z.int().min(0).describe('Bytes dropped between the kept head and tail of this stream (0 with countUnknown)'),
    countUnknown: z
      .literal(true)
      .optional()
      .describe("Output of this stream was lost and how much is not known: the engine's bounded log of a task adopted after a restart had replaced content the server had not read"),
  })
  .describe("Sent at exit, once per truncated stream, before that stream's tail frames");

export const exitFrame = z
  .strictObject({
    type: z.literal('exit'),
    seq,
    status: terminalStatus,
    exitCode: z.int().nullable(),
    reason: taskReason,
    durationMs: count.nullable(),
  })
  .describe('The last frame of every task');

export const streamFrame = z
  .discriminatedUnion('type', [statusFrame, outputFrame, gapFrame, exitFrame])
  .describe(
    'One frame of a task log: WebSocket text frames, lines of application/x-ndjson, and the data of Server-Sent Events all carry these',
  );

/** Out-of-band WebSocket frame answering a bad client frame; not part of the task log, so no seq. */
export const errorFrame = z
  .strictObject({
    type: z.literal('error'),
    code: errorCode,
    message: z.string(),
    details: errorDetails.optional(),
  })
  .describe('Answer to a client frame the server refused; carries no seq (it is not part of the task log)');

// ---- Keeping the schemas in step with what the routes build (checked by tsc) -------------------

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;
type Flat<T> = T extends object ? { [K in keyof T]: Flat<T[K]> } : T;

/* eslint-disable @typescript-eslint/no-unused-vars */
type _TaskView = Assert<Equal<Flat<z.infer<typeof taskView>>, Flat<ReturnType<typeof publicTask>>>>;
type _WorkspaceView = Assert<Equal<Flat<z.infer<typeof workspaceViewSchema>>, Flat<ReturnType<typeof workspaceView>>>>;
type _Readiness = Assert<Equal<Flat<z.infer<typeof readinessReport>>, Flat<ReadinessReport>>>;
type _Egress = Assert<Equal<Flat<z.infer<typeof egressReport>>, Flat<ReturnType<Store['egressDecisions']>>>>;
type _Errors = Assert<Equal<z.infer<typeof errorCode>, ErrorCode>>;
// Frames: the frame type allows any status/reason string in exit frames; the schema names the
// ones the task manager writes. Everything else must match exactly.
type FrameOf<F, T> = Flat<Omit<Extract<F, { type: T }>, 'status' | 'reason'>>;
type _StatusFrame = Assert<Equal<Flat<z.infer<typeof statusFrame>>, Flat<Extract<Frame, { type: 'status' }>>>>;
type _OutputFrame = Assert<Equal<Flat<z.infer<typeof outputFrame>>, Flat<Extract<Frame, { type: 'stdout' | 'stderr' }>>>>;
type _GapFrame = Assert<Equal<Flat<z.infer<typeof gapFrame>>, Flat<Extract<Frame, { type: 'gap' }>>>>;
type _ExitFrame = Assert<Equal<FrameOf<z.infer<typeof exitFrame>, 'exit'>, FrameOf<Frame, 'exit'>>>;
