import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Readable } from 'node:stream';
import type { Config } from '../config/schema.js';
import { AppError } from '../errors.js';
import type { TaskManager } from '../tasks/manager.js';
import { checkRequestLimits, type TaskPlan } from '../tasks/admission.js';
import type { TaskRecord } from '../tasks/model.js';
import { createTaskBody, createWorkspaceBody } from '../tasks/schemas.js';
import { ARCHIVE_MEDIA_TYPES } from '../workspace/intake/archive.js';
import type { WorkspaceIntake } from '../workspace/intake/intake.js';
import { readProjectFile } from '../workspace/projectfile.js';
import { checkInlineFiles } from '../workspace/workspaces.js';
import { jsonErrorReason, parse } from './errors.js';
import { workspaceView } from './workspaces.js';

const mediaType = (req: FastifyRequest) => String(req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();

/** Refuses a body whose declared length is already over the archive limit, before reading it. */
function checkDeclaredLength(req: FastifyRequest, limit: number): void {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) {
    throw new AppError('ARCHIVE_TOO_LARGE', { bytes: declared, limit, bound: 'workspaces.archive.maxCompressedBytes' });
  }
}

/**
 * After a refused upload the rest of the body is not read: the connection is closed once the
 * error is sent, so a client that keeps sending cannot hold the server.
 */
function closeAfterError(req: FastifyRequest, reply: FastifyReply): void {
  void reply.header('connection', 'close');
  req.raw.resume();
}

/**
 * POST /v1/workspaces (all intake kinds) and the multipart plugin used by POST /v1/tasks.
 * Archive bodies reach the handler as the raw request stream (no buffering); JSON bodies keep
 * the server's requests.bodyBytes limit.
 */
export async function workspaceIntakeRoutes(app: FastifyInstance, intake: WorkspaceIntake, config: Readonly<Config>): Promise<void> {
  const limit = config.workspaces.archive.maxCompressedBytes;
  // Multipart is parsed on demand by the handler (req.parts()), never buffered by the plugin.
  await app.register(multipart, {
    limits: { fields: 1, files: 1, parts: 2, fileSize: limit + 1, fieldSize: config.requests.bodyBytes },
  });

  await app.register(async (scope) => {
    scope.addContentTypeParser(Object.keys(ARCHIVE_MEDIA_TYPES), (_req, payload, done) => done(null, payload));

    scope.post('/v1/workspaces', async (req, reply) => {
      if (req.isMultipart()) {
        throw new AppError('UNSUPPORTED_MEDIA_TYPE', { declared: 'multipart/form-data', hint: 'multipart is accepted by POST /v1/tasks' });
      }
      const type = mediaType(req);
      if (type in ARCHIVE_MEDIA_TYPES) {
        try {
          checkDeclaredLength(req, limit);
          const w = await intake.fromArchive(req.principal.tenant, req.body as Readable, ARCHIVE_MEDIA_TYPES[type]!, type);
          return reply.status(201).send(workspaceView(w, config));
        } catch (err) {
          closeAfterError(req, reply);
          throw err;
        }
      }
      const body = parse(createWorkspaceBody, req.body, 'body');
      let w;
      if ('files' in body) {
        checkInlineFiles(body.files, config.workspaces); // the inline bounds (maxFiles, maxBytes) before anything is written
        w = await intake.fromFiles(req.principal.tenant, body.files);
      } else if ('git' in body) {
        w = await intake.fromGit(req.principal.tenant, body.git);
      } else {
        w = await intake.fromHostPath(req.principal.tenant, body.hostPath);
      }
      return reply.status(201).send(workspaceView(w, config));
    });
  });
}

/**
 * POST /v1/tasks as multipart/form-data: a `task` part (the JSON task, without `workspace`)
 * followed by one `workspace` part (an archive). The task is validated first, then the archive
 * becomes a new workspace; the task's image is resolved from the extracted files before the
 * workspace record exists, so an unknown or ambiguous image leaves nothing behind.
 */
export async function submitMultipartTask(req: FastifyRequest, reply: FastifyReply, manager: TaskManager, intake: WorkspaceIntake, config: Readonly<Config>): Promise<TaskRecord> {
  try {
    return await readMultipartTask(req, manager, intake, config);
  } catch (err) {
    closeAfterError(req, reply);
    throw asMultipartError(err, config);
  }
}

async function readMultipartTask(req: FastifyRequest, manager: TaskManager, intake: WorkspaceIntake, config: Readonly<Config>): Promise<TaskRecord> {
  checkDeclaredLength(req, config.workspaces.archive.maxCompressedBytes + config.requests.bodyBytes);
  const parts = req.parts();
  const first = await parts.next();
  if (first.done || first.value.fieldname !== 'task') {
    throw new AppError('MULTIPART_INVALID', { rule: 'task_part_first', got: first.done ? null : first.value.fieldname });
  }
  // A field sent with Content-Type: application/json arrives already parsed by the plugin.
  const raw = first.value.type === 'field' ? first.value.value : (await first.value.toBuffer()).toString('utf8');
  let json: unknown = raw;
  if (typeof raw === 'string') {
    try {
      json = JSON.parse(raw);
    } catch (err) {
      throw new AppError('MALFORMED_JSON', { part: 'task', reason: jsonErrorReason(err as Error) });
    }
  }
  const body = parse(createTaskBody, json, 'task part');
  if (body.workspace !== undefined) throw new AppError('MULTIPART_INVALID', { rule: 'task_names_a_workspace', hint: 'the workspace part supplies it' });
  checkRequestLimits(body, config); // refuse over-limit tasks before reading the archive

  const second = await parts.next();
  if (second.done || second.value.fieldname !== 'workspace' || second.value.type !== 'file') {
    throw new AppError('MULTIPART_INVALID', { rule: 'workspace_file_part_second', got: second.done ? null : second.value.fieldname });
  }
  const part = second.value;
  const type = part.mimetype.split(';')[0]!.trim().toLowerCase();
  if (!(type in ARCHIVE_MEDIA_TYPES)) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', { part: 'workspace', declared: type, accepted: Object.keys(ARCHIVE_MEDIA_TYPES) });
  }
  // Admission (the archive's sandboxshift.yaml, limits, allowlist, image, queue room) runs once,
  // on the extracted files inside createWith: a refusal there removes them and records nothing.
  let plan: TaskPlan | undefined;
  const w = await intake.fromArchive(req.principal.tenant, part.file, ARCHIVE_MEDIA_TYPES[type]!, type, async (rootFiles, dir) => {
    // Nothing may follow the workspace part (a second workspace or task part): checked once the
    // archive is read, before its workspace is recorded.
    await noMoreParts(parts);
    const projectFile = await readProjectFile(dir, config.workspaces.projectFileBytes);
    plan = await manager.admit(body, { rootEntries: rootFiles, projectFile, stored: true }, req.principal.tenant);
  });
  try {
    const task = manager.accept(body, plan!, w.id, { tenant: req.principal.tenant, keyId: req.principal.keyId });
    // The workspace was made for this task: it expires ephemeralTtlSeconds after its last use.
    intake.markEphemeral(w.id);
    return task;
  } catch (err) {
    // Only a queue that filled, or a shutdown that began, while the workspace was being recorded
    // gets here: the workspace is complete and stays usable, so name it.
    if (err instanceof AppError) {
      throw new AppError(err.code, { ...err.details, workspaceId: w.id }, err.message, err.headers);
    }
    throw err;
  }
}

const PART_LIMITS = new Set(['FST_PARTS_LIMIT', 'FST_FILES_LIMIT', 'FST_FIELDS_LIMIT']);

/** The body must end after the workspace part; a further part (or the plugin's part limits) is MULTIPART_INVALID. */
async function noMoreParts(parts: AsyncIterableIterator<{ fieldname: string }>): Promise<void> {
  let next;
  try {
    next = await parts.next();
  } catch (err) {
    if (PART_LIMITS.has((err as { code?: string }).code ?? '')) throw new AppError('MULTIPART_INVALID', { rule: 'extra_part', reason: (err as Error).message });
    throw err;
  }
  if (!next.done) throw new AppError('MULTIPART_INVALID', { rule: 'extra_part', got: next.value.fieldname });
}

/** @fastify/multipart's own errors → our codes. */
function asMultipartError(err: unknown, config: Readonly<Config>): unknown {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code === 'FST_INVALID_JSON_FIELD_ERROR') return new AppError('MALFORMED_JSON', { part: 'task', reason: jsonErrorReason(err as Error) });
  if (code === 'FST_REQ_FILE_TOO_LARGE') {
    return new AppError('ARCHIVE_TOO_LARGE', { limit: config.workspaces.archive.maxCompressedBytes, bound: 'workspaces.archive.maxCompressedBytes' });
  }
  if (PART_LIMITS.has(code)) return new AppError('MULTIPART_INVALID', { rule: 'extra_part', reason: (err as Error).message });
  if (code.startsWith('FST_') || /multipart|boundary/i.test((err as Error).message ?? '')) {
    return new AppError('MULTIPART_INVALID', { rule: 'malformed', reason: (err as Error).message });
  }
  return err;
}
