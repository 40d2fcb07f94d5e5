import Database from 'better-sqlite3';
import { DEFAULT_TENANT } from '../auth/principal.js';
import type { DecisionSink, EgressDecision } from '../egress/decisions.js';
import { decodeCursor, encodeCursor } from './cursor.js';
import type { TaskRecord, TaskStatus } from '../tasks/model.js';

export interface WorkspaceRecord {
  id: string;
  /** The tenant that created it. */
  tenant: string;
  createdAt: string;
  files: number;
  bytes: number;
  markers: string[];
  /** Last task, intake or read-back on it; the TTL sweep counts from here. */
  lastUsedAt: string;
  /** Bytes in use on the workspace's own filesystem (statfs), refreshed after each task. */
  usedBytes: number;
  /** Size of the workspace's filesystem: the hard cap on what tasks may write. */
  quotaBytes: number;
  /**
   * Created for a single task (no workspace given, inline files, or a multipart archive): it
   * expires workspaces.ephemeralTtlSeconds after its last use instead of ttlSeconds. A later task
   * that names it by id makes it a regular workspace.
   */
  ephemeral: boolean;
}

export interface TaskPage {
  tasks: TaskRecord[];
  nextCursor: string | null;
}

/** Persistence for tasks and workspaces. SQLite is the embedded default. */
export interface Store extends DecisionSink {
  insertTask(t: TaskRecord): void;
  updateTask(t: TaskRecord): void;
  getTask(id: string): TaskRecord | null;
  listTasks(q: { status?: TaskStatus; limit: number; cursor?: number }): TaskPage;
  tasksWithStatus(statuses: TaskStatus[]): TaskRecord[];
  insertWorkspace(w: WorkspaceRecord): void;
  getWorkspace(id: string): WorkspaceRecord | null;
  updateWorkspace(w: WorkspaceRecord): void;
  deleteWorkspace(id: string): void;
  listWorkspaces(): WorkspaceRecord[];
  meta(key: string, init: () => string): string;
  /** A task's stored egress decisions in order, and how many were past the per-task bound. */
  egressDecisions(taskId: string): { decisions: EgressDecision[]; dropped: number };
  close(): void;
}

export { decodeCursor, encodeCursor };

/** The server's database file in its data directory (tasks, workspaces, API keys). */
export const DATABASE_FILE = 'sandboxshift.db';

/** Records written before storage accounting existed lack its fields. */
function withWorkspaceDefaults(w: WorkspaceRecord): WorkspaceRecord {
  return { ...w, lastUsedAt: w.lastUsedAt ?? w.createdAt, usedBytes: w.usedBytes ?? 0, quotaBytes: w.quotaBytes ?? 0, ephemeral: w.ephemeral ?? false, tenant: w.tenant ?? DEFAULT_TENANT };
}

export class SqliteStore implements Store {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS tasks (
        rowid INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        data TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, rowid);
      CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (json_extract(data, '$.finishedAt'));
      CREATE TABLE IF NOT EXISTS workspaces (id TEXT PRIMARY KEY, data TEXT NOT NULL);
      -- Egress decisions: bounded per task by egress.maxDecisionsPerTask.
      CREATE TABLE IF NOT EXISTS egress_decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        task_id TEXT NOT NULL,
        data TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS egress_decisions_task ON egress_decisions (task_id, id);
      CREATE TABLE IF NOT EXISTS egress_dropped (task_id TEXT PRIMARY KEY, count INTEGER NOT NULL);
    `);
  }

  insertTask(t: TaskRecord): void {
    this.db.prepare('INSERT INTO tasks (id, status, data) VALUES (?, ?, ?)').run(t.id, t.status, JSON.stringify(t));
  }

  updateTask(t: TaskRecord): void {
    this.db.prepare('UPDATE tasks SET status = ?, data = ? WHERE id = ?').run(t.status, JSON.stringify(t), t.id);
  }

  getTask(id: string): TaskRecord | null {
    const row = this.db.prepare('SELECT data FROM tasks WHERE id = ?').get(id) as { data: string } | undefined;
    return row ? (JSON.parse(row.data) as TaskRecord) : null;
  }

  listTasks(q: { status?: TaskStatus; limit: number; cursor?: number }): TaskPage {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.status) {
      where.push('status = ?');
      args.push(q.status);
    }
    if (q.cursor !== undefined) {
      where.push('rowid < ?');
      args.push(q.cursor);
    }
    const sql = `SELECT rowid, data FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY rowid DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...args, q.limit + 1) as { rowid: number; data: string }[];
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    return {
      tasks: page.map((r) => JSON.parse(r.data) as TaskRecord),
      nextCursor: rows.length > q.limit && last ? encodeCursor(last.rowid) : null,
    };
  }

  tasksWithStatus(statuses: TaskStatus[]): TaskRecord[] {
    const rows = this.db
      .prepare(`SELECT data FROM tasks WHERE status IN (${statuses.map(() => '?').join(',')}) ORDER BY rowid`)
      .all(...statuses) as { data: string }[];
    return rows.map((r) => JSON.parse(r.data) as TaskRecord);
  }

  /** Ids of tasks in one of `statuses` that finished before `before` (an ISO time), oldest first. */
  finishedBefore(statuses: TaskStatus[], before: string, limit: number): string[] {
    const rows = this.db
      .prepare(
        `SELECT id FROM tasks WHERE json_extract(data, '$.finishedAt') < ? AND status IN (${statuses.map(() => '?').join(',')})
         ORDER BY json_extract(data, '$.finishedAt') LIMIT ?`,
      )
      .all(before, ...statuses, limit) as { id: string }[];
    return rows.map((r) => r.id);
  }

  /** Removes task records with their egress decisions, in one transaction. */
  deleteTasks(ids: string[]): void {
    const del = [
      this.db.prepare('DELETE FROM tasks WHERE id = ?'),
      this.db.prepare('DELETE FROM egress_decisions WHERE task_id = ?'),
      this.db.prepare('DELETE FROM egress_dropped WHERE task_id = ?'),
    ];
    this.db.transaction(() => {
      for (const id of ids) for (const stmt of del) stmt.run(id);
    })();
  }

  insertWorkspace(w: WorkspaceRecord): void {
    this.db.prepare('INSERT INTO workspaces (id, data) VALUES (?, ?)').run(w.id, JSON.stringify(w));
  }

  getWorkspace(id: string): WorkspaceRecord | null {
    const row = this.db.prepare('SELECT data FROM workspaces WHERE id = ?').get(id) as { data: string } | undefined;
    return row ? withWorkspaceDefaults(JSON.parse(row.data) as WorkspaceRecord) : null;
  }

  updateWorkspace(w: WorkspaceRecord): void {
    this.db.prepare('UPDATE workspaces SET data = ? WHERE id = ?').run(JSON.stringify(w), w.id);
  }

  deleteWorkspace(id: string): void {
    this.db.prepare('DELETE FROM workspaces WHERE id = ?').run(id);
  }

  listWorkspaces(): WorkspaceRecord[] {
    const rows = this.db.prepare('SELECT data FROM workspaces').all() as { data: string }[];
    return rows.map((r) => withWorkspaceDefaults(JSON.parse(r.data) as WorkspaceRecord));
  }

  meta(key: string, init: () => string): string {
    const row = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    if (row) return row.value;
    const value = init();
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run(key, value);
    return value;
  }

  addEgressDecision(taskId: string, d: EgressDecision, max: number): number | null {
    const stored = this.db.prepare('SELECT COUNT(*) AS n FROM egress_decisions WHERE task_id = ?').get(taskId) as { n: number };
    if (stored.n >= max) {
      this.db
        .prepare('INSERT INTO egress_dropped (task_id, count) VALUES (?, 1) ON CONFLICT (task_id) DO UPDATE SET count = count + 1')
        .run(taskId);
      return null;
    }
    return Number(this.db.prepare('INSERT INTO egress_decisions (task_id, data) VALUES (?, ?)').run(taskId, JSON.stringify(d)).lastInsertRowid);
  }

  setEgressBytes(id: number, bytesUp: number, bytesDown: number): void {
    this.db
      .prepare("UPDATE egress_decisions SET data = json_set(data, '$.bytesUp', ?, '$.bytesDown', ?) WHERE id = ?")
      .run(bytesUp, bytesDown, id);
  }

  egressDecisions(taskId: string): { decisions: EgressDecision[]; dropped: number } {
    const rows = this.db.prepare('SELECT data FROM egress_decisions WHERE task_id = ? ORDER BY id').all(taskId) as { data: string }[];
    const dropped = this.db.prepare('SELECT count FROM egress_dropped WHERE task_id = ?').get(taskId) as { count: number } | undefined;
    return { decisions: rows.map((r) => JSON.parse(r.data) as EgressDecision), dropped: dropped?.count ?? 0 };
  }

  close(): void {
    this.db.close();
  }
}
