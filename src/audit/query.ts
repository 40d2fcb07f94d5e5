import { chainFiles, fileLines } from './files.js';
import { parseRecordLine, type AuditRecord } from './record.js';

export interface AuditQuery {
  tenant?: string;
  taskId?: string;
  event?: string;
  /** ISO times: records at or after `since`, before `until`. */
  since?: string;
  until?: string;
  /** Only records after this seq (the cursor of the previous page). */
  afterSeq?: number;
  limit: number;
}

/**
 * A page of the audit log, oldest first: the records matching every filter given, after
 * `afterSeq`. `more` is true when a later matching record exists. Rotated files that end before
 * `afterSeq` are not read. Lines that are not records are skipped (`audit verify` reports them).
 */
export async function queryAudit(path: string, q: AuditQuery): Promise<{ records: AuditRecord[]; more: boolean }> {
  const files = chainFiles(path);
  const after = q.afterSeq ?? 0;
  const since = q.since === undefined ? null : Date.parse(q.since);
  const until = q.until === undefined ? null : Date.parse(q.until);
  const out: AuditRecord[] = [];
  for (let i = 0; i < files.length; i++) {
    const next = files[i + 1]?.firstSeq;
    if (next !== undefined && next !== null && next <= after + 1) continue;
    for await (const { line } of fileLines(files[i]!.path)) {
      const r = parseRecordLine(line);
      if (!r || r.seq <= after) continue;
      if (q.event !== undefined && r.event !== q.event) continue;
      if (q.tenant !== undefined && r.tenant !== q.tenant) continue;
      if (q.taskId !== undefined && r.taskId !== q.taskId) continue;
      const t = Date.parse(r.time);
      if (since !== null && !(t >= since)) continue;
      if (until !== null && !(t < until)) continue;
      if (out.length === q.limit) return { records: out, more: true };
      out.push(r);
    }
  }
  return { records: out, more: false };
}
