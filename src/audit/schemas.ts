import { z } from 'zod';

/** GET /v1/audit query: every filter optional; `cursor` is the `nextCursor` of the previous page. */
export const auditQuery = z.strictObject({
  tenant: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'a tenant name')
    .optional(),
  task: z
    .string()
    .regex(/^tsk_[A-Za-z0-9_-]{1,64}$/, 'a task id')
    .optional(),
  event: z
    .string()
    .regex(/^[a-z]+(\.[a-z_]+){1,3}$/, 'an event name such as task.finished')
    .max(64)
    .optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  until: z.iso.datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).default(100),
  cursor: z.string().min(1).max(64).optional(),
});

/** One line of the audit log as served (the fields past the common ones depend on the event). */
export const auditRecordSchema = z
  .looseObject({
    seq: z.int().min(1).describe('Position in the chain, from 1, across rotated files'),
    time: z.iso.datetime().describe('When the record was written (UTC)'),
    event: z
      .string()
      .describe(
        'task.submitted (command, setup, image, workspaceId, limits, allowlist, unrestricted, stdin, envNames and secretEnvNames: names only, never values), task.started, task.finished (status, reason, exitCode, durationMs, oomKills, stdoutBytes, stderrBytes), workspace.created, workspace.deleted (cause: request or expired), egress.decision (host, port, allowed, reason, address), auth.failed (clientAddress, method, path), key.created, key.revoked, config.loaded (configSha256 and a summary without secrets)',
      ),
    tenant: z.string().nullable().describe('The tenant the event concerns (null: none, e.g. an unauthenticated request)'),
    keyId: z.string().nullable().describe('The API key that acted (null: none, or a server without keys)'),
    taskId: z.string().optional().describe('The task, for task and egress events'),
    prevHash: z.string().describe("The previous record's hash (64 zeros for seq 1)"),
    hash: z.string().describe('Hex SHA-256 of the canonical JSON (sorted keys, no white space) of every other field of the record'),
  })
  .describe('An audit record');

export const auditPage = z
  .strictObject({
    records: z.array(auditRecordSchema).describe('Oldest first (by seq)'),
    nextCursor: z.string().nullable().describe('Pass as `cursor` for the next page; null on the last page'),
  })
  .describe('A page of the audit log');
