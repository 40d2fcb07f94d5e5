import Database from 'better-sqlite3';
import { DEFAULT_TENANT } from '../auth/principal.js';
import type { DecisionSink, EgressDecision } from '../egress/decisions.js';
import { decodeCursor, encodeCursor } from './cursor.js';

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

/**
 * Persistence for workspaces, egress decisions and server metadata. SQLite is the embedded
 * default; other parts keep tables of their own in the same database (`database`).
 */
export interface Store extends DecisionSink {
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

/** Distinct statement texts kept prepared. */
const STATEMENTS_KEPT = 256;

/** Records written before storage accounting existed lack its fields. */
function withWorkspaceDefaults(w: WorkspaceRecord): WorkspaceRecord {
  return { ...w, lastUsedAt: w.lastUsedAt ?? w.createdAt, usedBytes: w.usedBytes ?? 0, quotaBytes: w.quotaBytes ?? 0, ephemeral: w.ephemeral ?? false, tenant: w.tenant ?? DEFAULT_TENANT };
}

export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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

  /**
   * The prepared statement for `sql`, prepared once: preparing costs more than running the small
   * statements of the task path. Bounded: past STATEMENTS_KEPT distinct texts the cache restarts.
   */
  statement(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      if (this.statements.size >= STATEMENTS_KEPT) this.statements.clear();
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** The database itself, for the parts that keep tables of their own in it (task records). */
  get database(): Database.Database {
    return this.db;
  }

  insertWorkspace(w: WorkspaceRecord): void {
    this.statement('INSERT INTO workspaces (id, data) VALUES (?, ?)').run(w.id, JSON.stringify(w));
  }

  getWorkspace(id: string): WorkspaceRecord | null {
    const row = this.statement('SELECT data FROM workspaces WHERE id = ?').get(id) as { data: string } | undefined;
    return row ? withWorkspaceDefaults(JSON.parse(row.data) as WorkspaceRecord) : null;
  }

  updateWorkspace(w: WorkspaceRecord): void {
    this.statement('UPDATE workspaces SET data = ? WHERE id = ?').run(JSON.stringify(w), w.id);
  }

  deleteWorkspace(id: string): void {
    this.statement('DELETE FROM workspaces WHERE id = ?').run(id);
  }

  listWorkspaces(): WorkspaceRecord[] {
    const rows = this.statement('SELECT data FROM workspaces').all() as { data: string }[];
    return rows.map((r) => withWorkspaceDefaults(JSON.parse(r.data) as WorkspaceRecord));
  }

  meta(key: string, init: () => string): string {
    const row = this.statement('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    if (row) return row.value;
    const value = init();
    this.statement('INSERT INTO meta (key, value) VALUES (?, ?)').run(key, value);
    return value;
  }

  addEgressDecision(taskId: string, d: EgressDecision, max: number): number | null {
    const stored = this.statement('SELECT COUNT(*) AS n FROM egress_decisions WHERE task_id = ?').get(taskId) as { n: number };
    if (stored.n >= max) {
      this.statement('INSERT INTO egress_dropped (task_id, count) VALUES (?, 1) ON CONFLICT (task_id) DO UPDATE SET count = count + 1')
        .run(taskId);
      return null;
    }
    return Number(this.statement('INSERT INTO egress_decisions (task_id, data) VALUES (?, ?)').run(taskId, JSON.stringify(d)).lastInsertRowid);
  }

  setEgressBytes(id: number, bytesUp: number, bytesDown: number): void {
    this.statement("UPDATE egress_decisions SET data = json_set(data, '$.bytesUp', ?, '$.bytesDown', ?) WHERE id = ?")
      .run(bytesUp, bytesDown, id);
  }

  egressDecisions(taskId: string): { decisions: EgressDecision[]; dropped: number } {
    const rows = this.statement('SELECT data FROM egress_decisions WHERE task_id = ? ORDER BY id').all(taskId) as { data: string }[];
    const dropped = this.statement('SELECT count FROM egress_dropped WHERE task_id = ?').get(taskId) as { count: number } | undefined;
    return { decisions: rows.map((r) => JSON.parse(r.data) as EgressDecision), dropped: dropped?.count ?? 0 };
  }

  /** Removes a task's egress decisions and its dropped count. */
  deleteEgressDecisions(taskId: string): void {
    this.statement('DELETE FROM egress_decisions WHERE task_id = ?').run(taskId);
    this.statement('DELETE FROM egress_dropped WHERE task_id = ?').run(taskId);
  }

  close(): void {
    this.db.close();
  }
}
