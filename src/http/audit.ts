import type { FastifyInstance } from 'fastify';
import type { AuditRecorder } from '../audit/recorder.js';
import { queryAudit } from '../audit/query.js';
import { auditQuery } from '../audit/schemas.js';
import type { Config } from '../config/schema.js';
import { AppError } from '../errors.js';
import { decodeCursor, encodeCursor } from '../store/cursor.js';
import { requireAdmin } from './authenticate.js';
import { parse } from './errors.js';

/**
 * GET /v1/audit (admin only): a page of the audit log, oldest first, filtered by tenant, task,
 * event and time (`since` inclusive, `until` exclusive). The cursor stands for the last seq served.
 */
export function auditRoutes(app: FastifyInstance, audit: AuditRecorder | null, config: Readonly<Config>): void {
  app.get('/v1/audit', { preHandler: requireAdmin }, async (req) => {
    const q = parse(auditQuery, req.query, 'query');
    if (q.limit > config.requests.listLimit) {
      throw new AppError('LIMIT_ABOVE_MAXIMUM', { field: 'limit', value: q.limit, maximum: config.requests.listLimit });
    }
    let afterSeq = 0;
    if (q.cursor !== undefined) {
      const c = decodeCursor(q.cursor);
      if (c === null) throw new AppError('VALIDATION_FAILED', { issues: [{ path: 'cursor', message: 'not a cursor this server issued' }] });
      afterSeq = c;
    }
    if (!audit) return { records: [], nextCursor: null };
    const page = await queryAudit(audit.path, {
      ...(q.tenant !== undefined ? { tenant: q.tenant } : {}),
      ...(q.task !== undefined ? { taskId: q.task } : {}),
      ...(q.event !== undefined ? { event: q.event } : {}),
      ...(q.since !== undefined ? { since: q.since } : {}),
      ...(q.until !== undefined ? { until: q.until } : {}),
      afterSeq,
      limit: q.limit,
    });
    const last = page.records.at(-1);
    return { records: page.records, nextCursor: page.more && last ? encodeCursor(last.seq) : null };
  });
}
