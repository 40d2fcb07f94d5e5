import { DEFAULT_TENANT } from '../auth/principal.js';
import type { SqliteStore } from '../store/sqlite.js';
import { encodeCursor } from '../store/cursor.js';
import type { TaskRecord, TaskStatus } from './model.js';
import type { TaskPage, TaskStore } from './ports.js';
import type { RetentionStore } from './retention.js';

/** A task's tenant in SQL (records from before tenants have none: the default tenant). */
const TASK_TENANT = `coalesce(json_extract(data, '$.tenant'), '${DEFAULT_TENANT}')`;

/**
 * The task records in the server's SQLite database (a table of their own beside the store's
 * workspaces and egress decisions): the TaskStore and RetentionStore ports.
 */
export class SqliteTaskStore implements TaskStore, RetentionStore {
  constructor(private readonly store: SqliteStore) {
    store.database.exec(`
      CREATE TABLE IF NOT EXISTS tasks (
        rowid INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        status TEXT NOT NULL,
        data TEXT NOT NULL
      );
      CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status, rowid);
      CREATE INDEX IF NOT EXISTS tasks_tenant ON tasks (${TASK_TENANT}, rowid);
      CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (json_extract(data, '$.finishedAt'));
    `);
  }

  private get db() {
    return this.store.database;
  }

  insertTask(t: TaskRecord): void {
    this.store.statement('INSERT INTO tasks (id, status, data) VALUES (?, ?, ?)').run(t.id, t.status, JSON.stringify(t));
  }

  updateTask(t: TaskRecord): void {
    this.store.statement('UPDATE tasks SET status = ?, data = ? WHERE id = ?').run(t.status, JSON.stringify(t), t.id);
  }

  getTask(id: string): TaskRecord | null {
    const row = this.store.statement('SELECT data FROM tasks WHERE id = ?').get(id) as { data: string } | undefined;
    return row ? (JSON.parse(row.data) as TaskRecord) : null;
  }

  listTasks(q: { status?: TaskStatus; tenant?: string; limit: number; cursor?: number }): TaskPage {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.tenant !== undefined) {
      where.push(`${TASK_TENANT} = ?`);
      args.push(q.tenant);
    }
    if (q.status) {
      where.push('status = ?');
      args.push(q.status);
    }
    if (q.cursor !== undefined) {
      where.push('rowid < ?');
      args.push(q.cursor);
    }
    const sql = `SELECT rowid, data FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY rowid DESC LIMIT ?`;
    const rows = this.store.statement(sql).all(...args, q.limit + 1) as { rowid: number; data: string }[];
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    return {
      tasks: page.map((r) => JSON.parse(r.data) as TaskRecord),
      nextCursor: rows.length > q.limit && last ? encodeCursor(last.rowid) : null,
    };
  }

  tasksWithStatus(statuses: TaskStatus[]): TaskRecord[] {
    const rows = this.store
      .statement(`SELECT data FROM tasks WHERE status IN (${statuses.map(() => '?').join(',')}) ORDER BY rowid`)
      .all(...statuses) as { data: string }[];
    return rows.map((r) => JSON.parse(r.data) as TaskRecord);
  }

  finishedBefore(statuses: TaskStatus[], before: string, limit: number): string[] {
    const rows = this.store
      .statement(
        `SELECT id FROM tasks WHERE json_extract(data, '$.finishedAt') < ? AND status IN (${statuses.map(() => '?').join(',')})
         ORDER BY json_extract(data, '$.finishedAt') LIMIT ?`,
      )
      .all(before, ...statuses, limit) as { id: string }[];
    return rows.map((r) => r.id);
  }

  /** Removes task records with their egress decisions, in one transaction. */
  deleteTasks(ids: string[]): void {
    const del = this.store.statement('DELETE FROM tasks WHERE id = ?');
    this.db.transaction(() => {
      for (const id of ids) {
        del.run(id);
        this.store.deleteEgressDecisions(id);
      }
    })();
  }

  egressDecisions(taskId: string) {
    return this.store.egressDecisions(taskId);
  }
}
