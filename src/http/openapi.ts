import { stringify } from 'yaml';
import { z } from 'zod';
import { auditPage, auditQuery, auditRecordSchema } from '../audit/schemas.js';
import { ERRORS, type ErrorCode } from '../errors.js';
import { OPEN_PATHS } from './authenticate.js';
import { afterQuery, createTaskBody, createWorkspaceBody, listTasksQuery, listWorkspacesQuery, logsQuery, stdinFrame, workspaceRef } from '../tasks/schemas.js';
import {
  egressDecision,
  egressReport,
  errorCode,
  errorEnvelope,
  errorFrame,
  exitFrame,
  gapFrame,
  healthz,
  imageChoice,
  outputFrame,
  readinessReport,
  statusFrame,
  streamFrame,
  submitAccepted,
  taskLinks,
  taskList,
  workspaceList,
  taskReason,
  taskStatus,
  taskView,
  terminalStatus,
  workspaceViewSchema,
} from './responses.js';

/**
 * The OpenAPI 3.1 document of the v1 API, built from the zod schemas the server validates requests
 * with (src/tasks/schemas.ts, as inputs) and the ones describing what it sends (./responses.ts).
 * `npm run openapi` writes it to openapi.yaml; GET /openapi.json serves it. Error responses list
 * their codes in `x-error-codes`; statuses come from the one table in src/errors.ts.
 */

type Json = Record<string, unknown>;

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** Component name → schema. Responses are described as the server emits them (io: output). */
const RESPONSE_COMPONENTS: [string, z.ZodType][] = [
  ['TaskStatus', taskStatus],
  ['TerminalStatus', terminalStatus],
  ['TaskReason', taskReason],
  ['ImageChoice', imageChoice],
  ['Task', taskView],
  ['TaskLinks', taskLinks],
  ['TaskAccepted', submitAccepted],
  ['TaskList', taskList],
  ['WorkspaceList', workspaceList],
  ['Workspace', workspaceViewSchema],
  ['EgressDecision', egressDecision],
  ['EgressReport', egressReport],
  ['AuditRecord', auditRecordSchema],
  ['AuditPage', auditPage],
  ['ErrorCode', errorCode],
  ['Error', errorEnvelope],
  ['Health', healthz],
  ['ReadinessReport', readinessReport],
  ['StatusFrame', statusFrame],
  ['OutputFrame', outputFrame],
  ['GapFrame', gapFrame],
  ['ExitFrame', exitFrame],
  ['StreamFrame', streamFrame],
  ['ErrorFrame', errorFrame],
];

/** Requests are described as the server accepts them (io: input: defaulted fields are optional). */
const REQUEST_COMPONENTS: [string, z.ZodType][] = [
  ['WorkspaceRef', workspaceRef],
  ['CreateTaskRequest', createTaskBody],
  ['CreateWorkspaceRequest', createWorkspaceBody],
  ['ClientFrame', stdinFrame],
];

/**
 * zod's ISO datetime regex duplicates `format: date-time`: keep the format only. In responses,
 * the ±2^53-1 bounds zod puts on every integer say nothing: drop them.
 */
function override(io: 'input' | 'output') {
  return (ctx: { jsonSchema: Json }): void => {
    const s = ctx.jsonSchema;
    if (s.format === 'date-time') delete s.pattern;
    if (io === 'output' && s.type === 'integer') {
      if (s.maximum === Number.MAX_SAFE_INTEGER) delete s.maximum;
      if (s.minimum === Number.MIN_SAFE_INTEGER) delete s.minimum;
    }
  };
}

function components(entries: [string, z.ZodType][], io: 'input' | 'output'): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of entries) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, {
    target: 'draft-2020-12',
    io,
    uri: (id) => `#/components/schemas/${id}`,
    override: override(io) as never,
  }) as { schemas: Record<string, Json> };
  const schemas: Record<string, Json> = {};
  for (const [id] of entries) {
    const { $schema: _s, $id: _i, ...rest } = out.schemas[id]!;
    schemas[id] = rest;
  }
  return schemas;
}

/** A strict zod object of query fields → OpenAPI query parameters (unknown ones are refused). */
function queryParameters(schema: z.ZodType, descriptions: Record<string, string>): Json[] {
  const js = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' }) as {
    properties: Record<string, Json>;
    required?: string[];
  };
  return Object.entries(js.properties).map(([name, s]) => ({
    name,
    in: 'query',
    required: js.required?.includes(name) ?? false,
    ...(descriptions[name] ? { description: descriptions[name] } : {}),
    schema: s,
  }));
}

const idParam = (what: 'task' | 'workspace') => ({
  name: 'id',
  in: 'path',
  required: true,
  description:
    what === 'task'
      ? 'Task id (`tsk_…`); any other value answers 404 TASK_NOT_FOUND'
      : 'Workspace id (`ws_…`); any other value answers 404 WORKSPACE_NOT_FOUND',
  schema: { type: 'string' },
});

const json = (schema: Json) => ({ 'application/json': { schema } });

/**
 * Codes every route (and an unmatched one) can answer before any other work: the Host and Origin
 * checks of src/http/request-guard.ts.
 */
const GUARD_CODES: ErrorCode[] = ['ORIGIN_NOT_ALLOWED', 'HOST_NOT_ALLOWED'];

/** Codes every route that parses a request body can produce (Fastify's content-type parsers). */
const BODY_CODES: ErrorCode[] = ['MALFORMED_JSON', 'BODY_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'BODY_TIMEOUT'];
/** Codes of inline workspace files (checkInlineFiles / checkRelativePath). */
const INLINE_FILE_CODES: ErrorCode[] = [
  'WORKSPACE_TOO_MANY_FILES',
  'WORKSPACE_TOO_LARGE',
  'WORKSPACE_PATH_TOO_DEEP',
  'WORKSPACE_PATH_INVALID',
  'WORKSPACE_PATH_ESCAPE',
];

/** Codes of archive intake (POST /v1/workspaces with an archive body, multipart task submission). */
const ARCHIVE_CODES: ErrorCode[] = [
  'ARCHIVE_TOO_LARGE',
  'ARCHIVE_EXPANDED_TOO_LARGE',
  'ARCHIVE_TOO_MANY_ENTRIES',
  'ARCHIVE_COMPRESSION_RATIO',
  'ARCHIVE_CORRUPT',
  'WORKSPACE_LINK_ESCAPE',
  'WORKSPACE_SPECIAL_FILE',
  'WORKSPACE_ENTRY_CONFLICT',
];
/** Codes of git and host-root intake. */
const SOURCE_CODES: ErrorCode[] = [
  'GIT_URL_REFUSED',
  'GIT_HOST_NOT_ALLOWED',
  'GIT_ADDRESS_FORBIDDEN',
  'GIT_CLONE_FAILED',
  'GIT_TIMEOUT',
  'GIT_TOO_LARGE',
  'HOST_PATH_NOT_FOUND',
];

/** An archive request body: raw bytes whose type is sniffed from the content. */
const archiveBody = (description: string) => ({ schema: { type: 'string', contentMediaType: 'application/octet-stream', description } });
const ARCHIVE_CONTENT = {
  'application/x-tar': archiveBody('A tar archive (ustar/pax/GNU)'),
  'application/gzip': archiveBody('A gzip-compressed tar archive'),
  'application/x-gzip': archiveBody('Same as application/gzip'),
  'application/zip': archiveBody('A zip archive'),
  'application/octet-stream': archiveBody('Any of the three, recognised from its first bytes'),
};

/** Codes the WebSocket stream answers refused client frames with, as `ErrorFrame`s. */
export const WS_ERROR_FRAME_CODES: ErrorCode[] = [
  'VALIDATION_FAILED',
  'MALFORMED_JSON',
  'TASK_NOT_ACTIVE',
  'STDIN_NOT_ENABLED',
  'LIMIT_ABOVE_MAXIMUM',
  'INTERNAL',
];

export const WS_CLOSE_CODES: Record<string, string> = {
  '1000': 'The task finished: sent right after the exit frame',
  '1009': 'A client frame was larger than 2 MiB',
  '1011': 'The server failed while reading the task log',
  '4008': "The subscriber stalled (its socket drained nothing for 2 s) with an unsent backlog past the server's bound (output.subscriberBacklogBytes): reconnect with ?after=<last seq received>",
};

const TENANT_FILTER = "Only this tenant's (admin keys; a `user` key may name only its own tenant, any other is TENANT_FORBIDDEN)";

/** Codes whose responses carry Retry-After. */
const RETRY_AFTER_CODES: readonly ErrorCode[] = ['QUEUE_FULL', 'TENANT_QUEUED_LIMIT', 'RATE_LIMITED', 'TOO_MANY_STREAMS', 'SHUTTING_DOWN'];

/** Error responses for `codes`, grouped by their status from the ERRORS table. */
export function errorResponses(codes: readonly ErrorCode[]): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of Object.keys(ERRORS) as ErrorCode[]) {
    if (!codes.includes(code)) continue;
    const status = ERRORS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  for (const status of [...byStatus.keys()].sort((a, b) => a - b)) {
    const list = byStatus.get(status)!;
    out[String(status)] = {
      description: list.map((c) => `${c}: ${ERRORS[c].message}`).join('. '),
      ...(list.some((c) => RETRY_AFTER_CODES.includes(c))
        ? { headers: { 'Retry-After': { description: `Seconds to wait before trying again (${RETRY_AFTER_CODES.join(', ')})`, schema: { type: 'integer', minimum: 1 } } } }
        : {}),
      content: json(ref('Error')),
      'x-error-codes': list,
    };
  }
  return out;
}

interface Operation {
  method: 'get' | 'post' | 'delete';
  path: string;
  operationId: string;
  tags: string[];
  summary: string;
  description?: string;
  parameters?: Json[];
  requestBody?: Json;
  responses: Record<string, Json>;
  errors: ErrorCode[];
  extensions?: Json;
}

const STREAM_DESCRIPTION = [
  'Upgrades to a WebSocket (`Connection: Upgrade`, `Upgrade: websocket`). The task id and the query are checked before the upgrade: an unknown task or a bad `after` gets a JSON error response instead of a socket. So does a missing or unknown key (401) on a server with keys: a browser, which cannot set Authorization, offers the subprotocols `sandboxshift.v1` and `bearer.<key>` instead (`new WebSocket(url, ["sandboxshift.v1", "bearer." + key])`), and the server selects `sandboxshift.v1`.',
  '',
  'Server → client: JSON text frames (`StreamFrame`), `seq` starting at 1 for each task and increasing by one per frame: `status` (`queued` first, then `running`), `stdout`/`stderr` output, at exit one `gap` per truncated stream followed by that stream\'s kept tail, and `exit` last. `?after=<seq>` replays exactly the frames after that seq (default 0: from the start), then continues live; replay and live clients see the same sequence. After the exit frame the server closes with 1000.',
  '',
  'Client → server: JSON text frames (`ClientFrame`): `{"type":"stdin","data":"..."}` and `{"type":"stdin","eof":true}` for tasks submitted with `"stdin": true`, and `{"type":"cancel"}`. A client frame the server refuses is answered by an out-of-band `ErrorFrame` (`{"type":"error","code","message","details"?}`, no `seq`, codes in `x-websocket.errorFrameCodes`); the socket stays open.',
  '',
  'Close codes: 1000 task finished (after the exit frame); 4008 the subscriber stalled (nothing drained for 2 s) with its unsent backlog past the server\'s bound: reconnect with `?after=<last seq received>`; 1009 a client frame over 2 MiB; 1011 the server failed while reading the task log.',
].join('\n');

const OPERATIONS: Operation[] = [
  {
    method: 'post',
    path: '/v1/tasks',
    operationId: 'submitTask',
    tags: ['tasks'],
    summary: 'Submit a task',
    description:
      'Validates the task, resolves its workspace and image, and queues it. Everything that can refuse the task runs before anything is created.',
    requestBody: {
      required: true,
      content: {
        ...json(ref('CreateTaskRequest')),
        'multipart/form-data': {
          schema: {
            type: 'object',
            description:
              'One-shot use: a `task` part (the JSON task, without `workspace`) first, then one `workspace` part (an archive, as for POST /v1/workspaces) that becomes the task\'s new workspace. The task is checked before the archive is read; its image is resolved from the extracted files before the workspace is recorded.',
            properties: {
              task: ref('CreateTaskRequest'),
              workspace: { type: 'string', contentMediaType: 'application/octet-stream', description: 'tar, tar.gz or zip' },
            },
            required: ['task', 'workspace'],
          },
          encoding: {
            task: { contentType: 'application/json' },
            workspace: { contentType: 'application/x-tar, application/gzip, application/x-gzip, application/zip, application/octet-stream' },
          },
        },
      },
    },
    responses: { '202': { description: 'Accepted and queued', content: json(ref('TaskAccepted')) } },
    errors: [
      'VALIDATION_FAILED',
      ...BODY_CODES,
      'MULTIPART_INVALID',
      'WORKSPACE_NOT_FOUND',
      ...INLINE_FILE_CODES,
      ...ARCHIVE_CODES,
      'LIMIT_ABOVE_MAXIMUM',
      'IMAGE_UNKNOWN',
      'IMAGE_AMBIGUOUS',
      'IMAGE_MISSING',
      'EGRESS_PATTERN_INVALID',
      'EGRESS_PATTERN_TOO_BROAD',
      'EGRESS_OUTSIDE_CEILING',
      'EGRESS_RELAY_MISSING',
      'ISOLATION_NOT_ALLOWED',
      'PROJECT_FILE_INVALID',
      'PROJECT_FILE_TOO_LARGE',
      'WORKSPACE_QUOTA_EXCEEDED',
      'TENANT_STORAGE_LIMIT',
      'TENANT_QUEUED_LIMIT',
      'QUEUE_FULL',
      'ENGINE_UNAVAILABLE',
      'ISOLATION_UNAVAILABLE',
      'EGRESS_POLICY_UNENFORCED',
      'SHUTTING_DOWN',
      'INTERNAL',
    ],
  },
  {
    method: 'get',
    path: '/v1/tasks',
    operationId: 'listTasks',
    tags: ['tasks'],
    summary: 'List tasks, newest first',
    description: 'Unknown query parameters are refused with VALIDATION_FAILED. A `limit` above the server\'s page maximum (`requests.listLimit`) is LIMIT_ABOVE_MAXIMUM.',
    parameters: queryParameters(listTasksQuery, {
      status: 'Only tasks with this status',
      limit: 'Page size',
      cursor: '`nextCursor` of the previous page',
      tenant: TENANT_FILTER,
    }),
    responses: { '200': { description: "A page of tasks (the caller's tenant's; every tenant's for an admin key)", content: json(ref('TaskList')) } },
    errors: ['VALIDATION_FAILED', 'LIMIT_ABOVE_MAXIMUM', 'TENANT_FORBIDDEN', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/v1/tasks/{id}',
    operationId: 'getTask',
    tags: ['tasks'],
    summary: 'Get a task',
    parameters: [idParam('task')],
    responses: { '200': { description: 'The task', content: json(ref('Task')) } },
    errors: ['TASK_NOT_FOUND', 'INTERNAL'],
  },
  {
    method: 'post',
    path: '/v1/tasks/{id}/cancel',
    operationId: 'cancelTask',
    tags: ['tasks'],
    summary: 'Cancel a queued or running task',
    description:
      'A queued task is cancelled at once; a running one is stopped (SIGTERM, then SIGKILL after the grace period) and reaches `cancelled` shortly after. No request body is needed; one that is sent is still parsed.',
    parameters: [idParam('task')],
    responses: { '202': { description: 'Cancellation accepted; the task as it is now', content: json(ref('Task')) } },
    errors: ['TASK_NOT_FOUND', 'TASK_NOT_ACTIVE', ...BODY_CODES, 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/v1/tasks/{id}/logs',
    operationId: 'getTaskLogs',
    tags: ['tasks'],
    summary: "A task's recorded output",
    description: [
      'The format follows `Accept`: `text/event-stream` → Server-Sent Events (`event:` the frame type, `id:` its seq, `data:` the JSON frame; `Last-Event-ID` resumes like `after`); `application/x-ndjson` → one JSON frame per line; anything else → `text/plain`, stdout and stderr interleaved as they happened.',
      '`follow=true` keeps the response open, sending new frames until the task ends; otherwise it stops at what is recorded now.',
      '`stream=stdout|stderr` instead returns that stream\'s exact bytes as kept (head, then tail) as `application/octet-stream`; `follow` and `after` are then ignored.',
    ].join('\n\n'),
    parameters: [
      idParam('task'),
      ...queryParameters(logsQuery, {
        stream: 'Return this stream\'s exact kept bytes (application/octet-stream)',
        follow: 'Keep the response open until the task ends',
        after: 'Start after this seq (0: from the start)',
      }),
      {
        name: 'Last-Event-ID',
        in: 'header',
        required: false,
        description: 'With Accept: text/event-stream, resume after this seq (takes precedence over `after`)',
        schema: { type: 'string' },
      },
    ],
    responses: {
      '200': {
        description: 'The recorded output in the format `Accept` (or `stream`) selects',
        content: {
          'text/plain': {
            schema: { type: 'string', description: 'Output text of stdout and stderr interleaved' },
          },
          'application/x-ndjson': {
            schema: { type: 'string', description: 'One StreamFrame as JSON per line' },
            'x-item-schema': ref('StreamFrame'),
          },
          'text/event-stream': {
            schema: { type: 'string', description: 'Server-Sent Events whose data is one StreamFrame as JSON' },
            'x-item-schema': ref('StreamFrame'),
          },
          'application/octet-stream': {
            schema: { type: 'string', contentMediaType: 'application/octet-stream', description: 'With `stream`: exact bytes as kept' },
          },
        },
      },
    },
    errors: ['VALIDATION_FAILED', 'TASK_NOT_FOUND', 'TOO_MANY_STREAMS', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/v1/tasks/{id}/stream',
    operationId: 'streamTask',
    tags: ['tasks'],
    summary: 'Live frames over a WebSocket',
    description: STREAM_DESCRIPTION,
    parameters: [
      idParam('task'),
      ...queryParameters(afterQuery, { after: 'Replay from just after this seq (0: from the start), then continue live' }),
    ],
    responses: {
      '101': { description: 'Switching Protocols: the WebSocket carries the frames described above (see x-websocket)' },
    },
    errors: ['VALIDATION_FAILED', 'TASK_NOT_FOUND', 'TOO_MANY_STREAMS', 'INTERNAL'],
    extensions: {
      'x-websocket': {
        serverFrames: ref('StreamFrame'),
        clientFrames: ref('ClientFrame'),
        errorFrame: ref('ErrorFrame'),
        errorFrameCodes: WS_ERROR_FRAME_CODES,
        closeCodes: WS_CLOSE_CODES,
        subprotocols: {
          'sandboxshift.v1': 'Selected by the server whenever offered',
          'bearer.<key>': 'The API key, for clients that cannot set Authorization (browsers); offered beside sandboxshift.v1, never selected',
        },
      },
    },
  },
  {
    method: 'get',
    path: '/v1/tasks/{id}/egress',
    operationId: 'getTaskEgress',
    tags: ['tasks'],
    summary: "A task's egress decisions",
    description:
      "Every connection the task asked the egress proxy for, in order: allowed (with the address connected to and the bytes each way, final once the connection closed) or denied (with the reason). At most `egress.maxDecisionsPerTask` are kept per task; `dropped` counts the rest (they are still in the server's log). Requests too malformed to name a destination are only logged.",
    parameters: [idParam('task')],
    responses: { '200': { description: 'The decisions', content: json(ref('EgressReport')) } },
    errors: ['TASK_NOT_FOUND', 'INTERNAL'],
  },
  {
    method: 'post',
    path: '/v1/workspaces',
    operationId: 'createWorkspace',
    tags: ['workspaces'],
    summary: 'Create a workspace from an archive, inline files, a git repository or a host directory',
    description: [
      'An archive body (tar, tar.gz or zip) is streamed to disk, never buffered whole; its type is taken from its first bytes, and a declared type that disagrees is 415. Its size is bounded by `workspaces.archive.maxCompressedBytes`, not by the JSON body limit.',
      'Every entry is checked: relative paths only, no `..`, no NUL, bounded name length and depth; symlinks and hardlinks must stay inside without passing through another link; no entry may replace or write through an earlier one; devices, FIFOs and sockets are refused. Setuid, setgid and sticky bits are stripped and every file belongs to 65532. Expanded bytes, entries and the compression ratio are bounded. A refused intake leaves no files and no record; each error names the entry and the rule (`details.entry`, `details.rule`) or the bound (`details.bound`).',
      'JSON `{"git": {"url", "ref"}}` clones a branch, tag or commit at depth 1 from an allowed host over https; JSON `{"hostPath": "<root>/<dir>"}` copies a directory under a configured host root.',
    ].join('\n\n'),
    requestBody: { required: true, content: { ...json(ref('CreateWorkspaceRequest')), ...ARCHIVE_CONTENT } },
    responses: { '201': { description: 'Created', content: json(ref('Workspace')) } },
    errors: ['VALIDATION_FAILED', ...BODY_CODES, ...INLINE_FILE_CODES, ...ARCHIVE_CODES, ...SOURCE_CODES, 'WORKSPACE_QUOTA_EXCEEDED', 'TENANT_STORAGE_LIMIT', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/v1/workspaces',
    operationId: 'listWorkspaces',
    tags: ['workspaces'],
    summary: 'List workspaces, newest first',
    description: "Unknown query parameters are refused with VALIDATION_FAILED. A `limit` above the server's page maximum (`requests.listLimit`) is LIMIT_ABOVE_MAXIMUM; a `cursor` this server did not issue is VALIDATION_FAILED.",
    parameters: queryParameters(listWorkspacesQuery, {
      limit: 'Page size',
      cursor: '`nextCursor` of the previous page',
      tenant: TENANT_FILTER,
    }),
    responses: { '200': { description: "A page of workspaces (the caller's tenant's; every tenant's for an admin key)", content: json(ref('WorkspaceList')) } },
    errors: ['VALIDATION_FAILED', 'LIMIT_ABOVE_MAXIMUM', 'TENANT_FORBIDDEN', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/v1/workspaces/{id}',
    operationId: 'getWorkspace',
    tags: ['workspaces'],
    summary: 'Get a workspace',
    parameters: [idParam('workspace')],
    responses: { '200': { description: 'The workspace', content: json(ref('Workspace')) } },
    errors: ['WORKSPACE_NOT_FOUND', 'INTERNAL'],
  },
  // Workspace lifecycle and read-back.
  {
    method: 'delete',
    path: '/v1/workspaces/{id}',
    operationId: 'deleteWorkspace',
    tags: ['workspaces'],
    summary: 'Delete a workspace',
    description:
      'Removes the workspace, its filesystem image and its mount. Refused with 409 WORKSPACE_BUSY while a task is queued or running on it, or while the server still holds it after waiting up to 5 s (a read-back in progress, a just-finished task whose container is being removed); afterwards the id answers 404. Idle workspaces are also removed automatically `workspaces.ttlSeconds` after their last use.',
    parameters: [idParam('workspace')],
    responses: { '204': { description: 'Deleted' } },
    errors: ['WORKSPACE_NOT_FOUND', 'WORKSPACE_BUSY', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/v1/workspaces/{id}/archive',
    operationId: 'getWorkspaceArchive',
    tags: ['workspaces'],
    summary: 'The current content as a tar.gz (streamed)',
    description: [
      'Directories, regular files and symbolic links. Links come back as link entries and are never followed; FIFOs, sockets and devices are left out. Ownership reads 65532; setuid/setgid/sticky bits are not carried.',
      'The server reads through a read-only view of the workspace on which the kernel follows no symbolic link, so a link a task planted, or swapped in for a directory during the read, yields nothing from outside the workspace (such entries are skipped).',
      'Allowed while a task runs on the workspace: the archive then reflects the content as the walk finds it, file by file (each file is sent with the size it had when opened).',
      "The archive never holds more file bytes than the workspace's disk quota (a sparse file can claim far more): a file larger than the quota, or one that would take the archive's total past it, is left out. The `X-SandboxShift-Omitted` header counts the files left out, and when there are any the archive's last entry is a regular file `.sandboxshift-omitted.txt` with one line per file: `<reason>\\t<size>\\t<path>`, reason `larger_than_quota` or `total_over_quota`. The header is counted by a walk before the body is sent; a file that grew past the budget while the archive was sent is left out too and listed, so the list is the complete account.",
    ].join('\n\n'),
    parameters: [idParam('workspace')],
    responses: {
      '200': {
        description: 'A gzip-compressed tar archive',
        headers: {
          'X-SandboxShift-Omitted': {
            description: 'How many files the archive leaves out because they would pass the workspace quota (0: none); see `.sandboxshift-omitted.txt`',
            schema: { type: 'integer', minimum: 0 },
          },
        },
        content: { 'application/gzip': { schema: { type: 'string', contentMediaType: 'application/gzip' } } },
      },
    },
    errors: ['WORKSPACE_NOT_FOUND', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/v1/workspaces/{id}/files/{path}',
    operationId: 'getWorkspaceFile',
    tags: ['workspaces'],
    summary: "One file's bytes",
    description:
      'The path is relative to the workspace root (its segments percent-encoded as needed). Only regular files are served: a path that is, or passes through, a symbolic link is 422 WORKSPACE_FILE_IS_LINK; a directory, FIFO, socket or device is 422 WORKSPACE_FILE_NOT_REGULAR (directories are not listed: use the archive); `..`, absolute or malformed paths are refused like inline file paths. A file larger than the workspace\'s disk quota (a sparse file) is 422 WORKSPACE_FILE_TOO_LARGE (details `size`, `limit`): a read-back never sends more bytes than the quota. Allowed while a task runs on the workspace.',
    parameters: [
      idParam('workspace'),
      { name: 'path', in: 'path', required: true, description: 'Relative path of a regular file in the workspace (may contain `/`)', schema: { type: 'string' } },
    ],
    responses: {
      '200': {
        description: 'The file content, with Content-Length',
        content: { 'application/octet-stream': { schema: { type: 'string', contentMediaType: 'application/octet-stream' } } },
      },
    },
    errors: [
      'WORKSPACE_NOT_FOUND',
      'WORKSPACE_FILE_NOT_FOUND',
      'WORKSPACE_FILE_IS_LINK',
      'WORKSPACE_FILE_NOT_REGULAR',
      'WORKSPACE_FILE_TOO_LARGE',
      'WORKSPACE_PATH_INVALID',
      'WORKSPACE_PATH_ESCAPE',
      'WORKSPACE_PATH_TOO_DEEP',
      'INTERNAL',
    ],
  },
  {
    method: 'get',
    path: '/v1/audit',
    operationId: 'listAudit',
    tags: ['operations'],
    summary: 'Read the audit log (admin only)',
    description: [
      "The server's append-only audit log (`audit.path`, rotated files included), oldest first: task submitted, started and finished; workspace created and deleted; every egress decision; every 401; API keys created and revoked; the configuration loaded at start-up. Environment values are never recorded, only their names. Each record carries the hash of the one before (`prevHash`) and its own (`hash`); `sandboxshift audit verify` checks the chain.",
      "Filters combine: `tenant`, `task` (a task id), `event` (e.g. `task.finished`), `since` (inclusive) and `until` (exclusive). A key whose role is `user` is 403 ADMIN_REQUIRED. A `limit` above `requests.listLimit` is LIMIT_ABOVE_MAXIMUM; a `cursor` this server did not issue is VALIDATION_FAILED; unknown query parameters are refused.",
    ].join('\n\n'),
    parameters: queryParameters(auditQuery, {
      tenant: 'Only records of this tenant',
      task: 'Only records of this task',
      event: 'Only records of this event',
      since: 'Only records written at or after this time (ISO 8601)',
      until: 'Only records written before this time (ISO 8601)',
      limit: 'Page size',
      cursor: '`nextCursor` of the previous page',
    }),
    responses: { '200': { description: 'A page of audit records', content: json(ref('AuditPage')) } },
    errors: ['VALIDATION_FAILED', 'LIMIT_ABOVE_MAXIMUM', 'ADMIN_REQUIRED', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/metrics',
    operationId: 'metrics',
    tags: ['operations'],
    summary: 'Prometheus metrics (admin only on a server with keys)',
    description:
      'Prometheus text exposition: `sandboxshift_tasks_total{status}` (transitions into each status; `queued` counts submissions), `sandboxshift_queue_depth`, `sandboxshift_task_start_seconds` (accepted to started) and `sandboxshift_task_duration_seconds` (started to ended) histograms, `sandboxshift_stream_bytes_total{stream}` (stdout and stderr bytes, counted when a task ends), `sandboxshift_subscribers` (live streams open), `sandboxshift_egress_decisions_total{allowed}`, `sandboxshift_engine_errors_total` (tasks ended by an engine error and requests refused with ENGINE_UNAVAILABLE) and `sandboxshift_auth_failures_total` (401 answers). A key whose role is `user` is 403 ADMIN_REQUIRED.',
    responses: {
      '200': {
        description: 'The metrics',
        content: { 'text/plain': { schema: { type: 'string', description: 'Prometheus text format 0.0.4' } } },
      },
    },
    errors: ['ADMIN_REQUIRED', 'INTERNAL'],
  },
  {
    method: 'get',
    path: '/healthz',
    operationId: 'healthz',
    tags: ['operations'],
    summary: 'The process is up',
    responses: { '200': { description: 'Up', content: json(ref('Health')) } },
    errors: [],
  },
  {
    method: 'get',
    path: '/readyz',
    operationId: 'readyz',
    tags: ['operations'],
    summary: 'Engine reachable, a hardened container starts, required images present',
    responses: {
      '200': { description: 'Ready', content: json(ref('ReadinessReport')) },
      '503': { description: 'Not ready (the report says why)', content: json(ref('ReadinessReport')) },
    },
    errors: ['INTERNAL'],
  },
  {
    method: 'get',
    path: '/openapi.json',
    operationId: 'openapi',
    tags: ['operations'],
    summary: 'This document',
    responses: {
      '200': { description: 'The OpenAPI document (the same as openapi.yaml)', content: json({ type: 'object' }) },
    },
    errors: [],
  },
];

function operationObject(op: Operation): Json {
  const open = OPEN_PATHS.has(op.path);
  const errors = errorResponses([...op.errors, ...GUARD_CODES, ...(open ? [] : (['UNAUTHENTICATED', 'RATE_LIMITED'] as ErrorCode[]))]);
  if (op.path === '/v1/tasks/{id}/stream' && errors['404']) {
    errors['404'] = {
      ...errors['404'],
      description: `${String(errors['404'].description)}. A request without a WebSocket upgrade also answers 404 for an existing task, with an empty body`,
    };
  }
  return {
    operationId: op.operationId,
    tags: op.tags,
    summary: op.summary,
    ...(op.description ? { description: op.description } : {}),
    ...(op.parameters ? { parameters: op.parameters } : {}),
    ...(op.requestBody ? { requestBody: op.requestBody } : {}),
    responses: { ...op.responses, ...errors },
    // The open routes need no key; every other one takes the bearer key (on a server with keys).
    ...(open ? { security: [] } : {}),
    ...op.extensions,
  };
}

const DESCRIPTION = [
  'Runs shell tasks in hardened Podman containers and streams their output live.',
  '',
  'Errors are `{"error": {"code", "message", "details"?}}`. Each code has one HTTP status (400 malformed or failing the schema; 401 no valid API key; 403 a request from a web page of another origin, a route for admin keys only, or a user key filtering by another tenant; 404 unknown; 409 conflicts of state; 413 too big or too many; 415 unsupported media type; 421 a Host header that names neither this server nor an allowed host; 422 refused by policy; 429 queue full, a tenant\'s queue at its limit or too many requests, with Retry-After; 503 engine unreachable, an allowed isolation that cannot run tasks here (ISOLATION_UNAVAILABLE), a task with an allowlist on a Kubernetes cluster whose NetworkPolicy self-test failed (EGRESS_POLICY_UNENFORCED), or the server shutting down (SHUTTING_DOWN, with Retry-After); 500 unexpected). Every error response lists the codes it can carry in `x-error-codes`.',
  '',
  'Before anything else, every request (WebSocket upgrades included) is checked: a `Host` that names neither the listen address, the address the connection arrived on, a loopback name (`localhost`, 127.0.0.0/8, `[::1]`; any port) nor an entry of the `http.allowedHosts` configuration is 421 HOST_NOT_ALLOWED; an `Origin` that is neither the server\'s own (`http://` + Host) nor in `http.allowedOrigins` (`null` included), or `Sec-Fetch-Site: cross-site`/`same-site` without a listed Origin, is 403 ORIGIN_NOT_ALLOWED. Requests without Origin and Sec-Fetch-Site (curl, SDKs) are unaffected.',
  '',
  'On a server with API keys (`auth.keys` in the configuration, or keys made by `sandboxshift keys create`), every route except /healthz, /readyz and /openapi.json needs `Authorization: Bearer <key>` (security scheme `bearerKey`); a missing, malformed, unknown or revoked key is 401 UNAUTHENTICATED (the same answer for each). A WebSocket upgrade may instead offer the subprotocols `sandboxshift.v1` and `bearer.<key>` (browsers cannot set headers on a WebSocket); the server then selects `sandboxshift.v1`. A server without keys needs none (and listens on loopback only).',
  '',
  'CORS: for an origin listed in `http.allowedOrigins`, a preflight (`OPTIONS` with `Access-Control-Request-Method`, on any path) is answered 204 without a key, allowing the methods GET, POST and DELETE and the headers Authorization, Content-Type, Accept and Last-Event-ID; every response to such an origin carries `Access-Control-Allow-Origin` echoing it and exposes Retry-After, Content-Disposition and X-SandboxShift-Omitted. No credentials mode (keys are not cookies). Other origins get no CORS headers (their requests are 403 ORIGIN_NOT_ALLOWED).',
  '',
  "Every key belongs to a tenant. A key of role `user` sees only its tenant's tasks and workspaces: another tenant's ids answer 404 TASK_NOT_FOUND or WORKSPACE_NOT_FOUND exactly as ids that do not exist (over REST, logs, SSE and WebSocket), lists hold only its own, and a task may name only a workspace of its own tenant. A key of role `admin` sees every tenant's and filters lists with `?tenant=`; `?tenant=` naming another tenant with a `user` key is 403 TENANT_FORBIDDEN. A server without keys acts for the tenant `default` with the admin view.",
  '',
  "Per tenant (`tenants.defaults`, `tenants.overrides.<tenant>`): requests per minute (past it 429 RATE_LIMITED, with Retry-After); tasks waiting to run (`maxQueued`: 429 TENANT_QUEUED_LIMIT, with Retry-After); tasks running at once (`maxRunning`: further tasks wait in the queue, which serves tenants round-robin and each tenant's tasks in order); and the disk its workspaces may take, counted as the sum of their quotas (`workspaceBytes`: 413 TENANT_STORAGE_LIMIT). A client address whose requests failed authentication more than `requests.authFailuresPerMinute` times gets 429 RATE_LIMITED for every request but /healthz, /readyz and /openapi.json until its budget refills.",
  '',
  'A method and path not listed here answers 404 NOT_FOUND (see `x-unmatched-route`).',
].join('\n');

/** The OpenAPI 3.1 document. Deterministic: the same server code gives the same document. */
export function openapiDocument(): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const op of OPERATIONS) {
    (paths[op.path] ??= {})[op.method] = operationObject(op);
  }
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: { title: 'SandboxShift', version: 'v1', description: DESCRIPTION, license: { name: 'Apache-2.0', identifier: 'Apache-2.0' } },
    tags: [
      { name: 'tasks', description: 'Submit, inspect, cancel and follow tasks' },
      { name: 'workspaces', description: 'Files tasks run in' },
      { name: 'operations', description: 'Health, readiness and this document' },
    ],
    paths,
    security: [{ bearerKey: [] }],
    components: {
      schemas: { ...components(RESPONSE_COMPONENTS, 'output'), ...components(REQUEST_COMPONENTS, 'input') },
      securitySchemes: {
        bearerKey: {
          type: 'http',
          scheme: 'bearer',
          description:
            'An API key (`ssk_` and base64url) as `Authorization: Bearer <key>`; on a WebSocket upgrade also as the subprotocol `bearer.<key>` offered beside `sandboxshift.v1`. Needed only on a server with keys.',
        },
      },
    },
    'x-unmatched-route': { responses: errorResponses(['NOT_FOUND', 'UNAUTHENTICATED', 'RATE_LIMITED', ...GUARD_CODES]) },
  };
}

/** openapi.yaml's exact text for `doc` (scripts/openapi.ts writes it; a unit test compares it). */
export function openapiYaml(doc: unknown = openapiDocument()): string {
  return `# Generated from src/http/openapi.ts by \`npm run build && npm run openapi\`. Do not edit.\n${stringify(doc, { lineWidth: 0, aliasDuplicateObjects: false })}`;
}
