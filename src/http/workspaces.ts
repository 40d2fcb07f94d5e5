import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Config } from '../config/schema.js';
import { detectImage } from '../detection/detect.js';
import type { WorkspaceRecord } from '../store/sqlite.js';
import { openViewFile, packView, planView } from '../workspace/readback.js';
import type { Workspaces } from '../workspace/workspaces.js';
import { AppError } from '../errors.js';
import { listWorkspacesQuery } from '../tasks/schemas.js';
import { listTenant } from '../auth/scope.js';
import { parse } from './errors.js';
import { visibleWorkspace } from './scoped.js';

export function workspaceView(w: WorkspaceRecord, config: Readonly<Config>) {
  const ttl = w.ephemeral ? config.workspaces.ephemeralTtlSeconds : config.workspaces.ttlSeconds;
  const detection = detectImage(w.markers, config.images);
  return {
    id: w.id,
    tenant: w.tenant,
    files: w.files,
    bytes: w.bytes,
    image: { name: detection.name, markers: detection.markers },
    createdAt: w.createdAt,
    lastUsedAt: w.lastUsedAt,
    ephemeral: w.ephemeral,
    expiresAt: new Date(Date.parse(w.lastUsedAt) + ttl * 1000).toISOString(),
    usage: { usedBytes: w.usedBytes, quotaBytes: w.quotaBytes },
  };
}

/** Header of GET /v1/workspaces/:id/archive: how many files the archive leaves out. */
export const OMITTED_HEADER = 'x-sandboxshift-omitted';

/** The most file bytes a read-back sends: the workspace's quota (a sparse file may claim more). */
const readbackLimit = (w: WorkspaceRecord, config: Readonly<Config>) => w.quotaBytes || config.workspaces.quotaMb * 1024 * 1024;

/**
 * One page of workspaces, newest first (createdAt, then id). The cursor is the last item's
 * position, so a page stays right while workspaces are added or removed.
 */
export function workspacePage(all: readonly WorkspaceRecord[], limit: number, cursor?: string) {
  const key = (w: WorkspaceRecord) => `${w.createdAt}|${w.id}`;
  const sorted = [...all].sort((a, b) => (key(a) < key(b) ? 1 : key(a) > key(b) ? -1 : 0));
  let after: string | null = null;
  if (cursor !== undefined) {
    after = Buffer.from(cursor, 'base64url').toString('utf8');
    if (!/^\d{4}-\d\d-\d\dT[\d:.]+Z\|ws_[A-Za-z0-9_-]{1,64}$/.test(after)) {
      throw new AppError('VALIDATION_FAILED', { issues: [{ path: 'cursor', message: 'not a cursor this server issued' }] });
    }
  }
  const rest = after === null ? sorted : sorted.filter((w) => key(w) < after!);
  const items = rest.slice(0, limit);
  const nextCursor = rest.length > limit ? Buffer.from(key(items[items.length - 1]!)).toString('base64url') : null;
  return { items, nextCursor };
}

const idOf = (params: unknown) => (params as { id: string }).id;

/**
 * Workspace routes: list, get, delete, and read-back (archive, one file).
 * `busy` says whether a task is queued or running on a workspace (the task manager knows).
 * Read-back is allowed while a task runs on the workspace: it reads through a read-only,
 * nosymfollow view, so it sees the content as it is at that moment and never follows a link.
 */
export function workspaceRoutes(app: FastifyInstance, workspaces: Workspaces, config: Readonly<Config>, busy: (id: string) => boolean): void {
  // POST /v1/workspaces (every intake kind) lives in ./workspace-intake.ts.
  app.get('/v1/workspaces', async (req) => {
    const q = parse(listWorkspacesQuery, req.query, 'query');
    if (q.limit > config.requests.listLimit) {
      throw new AppError('LIMIT_ABOVE_MAXIMUM', { field: 'limit', value: q.limit, maximum: config.requests.listLimit });
    }
    const tenant = listTenant(req.principal, q.tenant);
    const page = workspacePage(workspaces.list(tenant), q.limit, q.cursor);
    return { workspaces: page.items.map((w) => workspaceView(w, config)), nextCursor: page.nextCursor };
  });

  app.get('/v1/workspaces/:id', async (req) => workspaceView(visibleWorkspace(req, workspaces, idOf(req.params)), config));

  app.delete('/v1/workspaces/:id', async (req, reply) => {
    // Up to 5 s for the server's own hold to end (a finished task's container being removed).
    await workspaces.delete(visibleWorkspace(req, workspaces, idOf(req.params)).id, busy, 5000);
    return reply.status(204).send();
  });

  app.get('/v1/workspaces/:id/archive', async (req, reply) => {
    const w = visibleWorkspace(req, workspaces, idOf(req.params));
    const view = await workspaces.storage.openView(w.id);
    let plan;
    try {
      plan = await planView(view.dir, readbackLimit(w, config));
    } catch (err) {
      await view.close();
      throw err;
    }
    workspaces.touch(w.id);
    const stream = packView(view.dir, plan, (r) => {
      if (r.error) req.log.error({ workspaceId: w.id, err: r.error }, 'workspace archive failed');
      else req.log.info({ workspaceId: w.id, entries: r.entries, skipped: r.skipped, omitted: r.omitted }, 'workspace archive sent');
      void view.close();
    });
    // Counted before the body is sent; the archive's last entry lists every file left out.
    reply.header(OMITTED_HEADER, String(plan.omitted.length));
    reply.raw.once('close', () => stream.destroy());
    cutOffWhenIdle(reply, config.workspaces.readbackIdleSeconds);
    return sendStream(reply, stream, 'application/gzip', `${w.id}.tar.gz`);
  });

  app.get('/v1/workspaces/:id/files/*', async (req, reply) => {
    const w = visibleWorkspace(req, workspaces, idOf(req.params));
    const path = (req.params as { '*': string })['*'];
    const view = await workspaces.storage.openView(w.id);
    let file;
    try {
      file = await openViewFile(view.dir, path, config.workspaces, readbackLimit(w, config));
    } catch (err) {
      await view.close();
      throw err;
    }
    workspaces.touch(w.id);
    // The view stays mounted until the descriptor is closed (the stream ended or was cut off).
    file.stream.once('close', () => void view.close());
    reply.raw.once('close', () => file.stream.destroy());
    cutOffWhenIdle(reply, config.workspaces.readbackIdleSeconds);
    reply.header('content-length', String(file.size));
    return sendStream(reply, file.stream, 'application/octet-stream');
  });
}

/**
 * A read-back holds the workspace mounted until its response ends: a client that stops reading
 * (connection open, nothing taken) must not hold it forever. The socket's idle timeout fires when
 * nothing moved either way for that long; then the connection is dropped and the read cleaned up.
 */
function cutOffWhenIdle(reply: FastifyReply, seconds: number): void {
  const socket = reply.raw.socket;
  if (!socket) return;
  socket.setTimeout(seconds * 1000, () => socket.destroy());
  reply.raw.once('finish', () => socket.setTimeout(0));
}

function sendStream(reply: FastifyReply, stream: NodeJS.ReadableStream, type: string, filename?: string) {
  reply.header('content-type', type);
  if (filename) reply.header('content-disposition', `attachment; filename="${filename}"`);
  return reply.send(stream);
}
