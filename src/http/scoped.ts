import type { FastifyRequest } from 'fastify';
import { DEFAULT_TENANT } from '../auth/principal.js';
import { canSee } from '../auth/scope.js';
import { AppError } from '../errors.js';
import type { WorkspaceRecord } from '../store/sqlite.js';
import type { TaskRecord } from '../tasks/model.js';

/**
 * The task `id` as the request's principal may see it: another tenant's task is TASK_NOT_FOUND
 * with the very body a task that does not exist gets. Every task route reads its task through here.
 */
export function visibleTask(req: FastifyRequest, tasks: { get(id: string): TaskRecord }, id: string): TaskRecord {
  const t = tasks.get(id);
  if (!canSee(req.principal, t.tenant ?? DEFAULT_TENANT)) throw new AppError('TASK_NOT_FOUND', { id });
  return t;
}

/** The workspace `id` as the request's principal may see it (another tenant's: WORKSPACE_NOT_FOUND). */
export function visibleWorkspace(req: FastifyRequest, workspaces: { get(id: string): WorkspaceRecord }, id: string): WorkspaceRecord {
  const w = workspaces.get(id);
  if (!canSee(req.principal, w.tenant)) throw new AppError('WORKSPACE_NOT_FOUND', { id });
  return w;
}

/** What a record carries of the principal that created it. */
export const ownerOf = (req: FastifyRequest) => ({ tenant: req.principal.tenant, keyId: req.principal.keyId });
