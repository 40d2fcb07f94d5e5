import type { EgressDecision } from '../../src/egress/decisions.js';
import { AppError } from '../../src/errors.js';
import { encodeCursor } from '../../src/store/cursor.js';
import type { Store, WorkspaceRecord } from '../../src/store/sqlite.js';
import type { TaskRecord, TaskStatus } from '../../src/tasks/model.js';
import type { TaskPage, TaskStore, TaskWorkspaces } from '../../src/tasks/ports.js';
import { PROJECT_FILE } from '../../src/workspace/projectfile.js';
import { checkInlineFiles, newWorkspaceId, type WorkspaceLimits } from '../../src/workspace/workspaces.js';

const copy = <T>(v: T): T => structuredClone(v);

/**
 * The store's records in memory: task records (the TaskStore port), workspace records, egress
 * decisions and metadata (the Store the HTTP workspace routes read). Records are copied in and
 * out, as a database would.
 */
export class MemoryStore implements Store, TaskStore {
  private readonly tasks = new Map<string, { row: number; data: TaskRecord }>();
  private readonly workspaces = new Map<string, WorkspaceRecord>();
  private readonly decisions = new Map<string, EgressDecision[]>();
  private readonly metaValues = new Map<string, string>();
  private rows = 0;

  insertTask(t: TaskRecord): void {
    if (this.tasks.has(t.id)) throw new Error(`task ${t.id} exists`);
    this.tasks.set(t.id, { row: ++this.rows, data: copy(t) });
  }

  updateTask(t: TaskRecord): void {
    const e = this.tasks.get(t.id);
    if (e) e.data = copy(t);
  }

  getTask(id: string): TaskRecord | null {
    const e = this.tasks.get(id);
    return e ? copy(e.data) : null;
  }

  listTasks(q: { status?: TaskStatus; tenant?: string; limit: number; cursor?: number }): TaskPage {
    const rows = [...this.tasks.values()]
      .filter((e) => (q.status === undefined || e.data.status === q.status) && (q.tenant === undefined || e.data.tenant === q.tenant) && (q.cursor === undefined || e.row < q.cursor))
      .sort((a, b) => b.row - a.row);
    const page = rows.slice(0, q.limit);
    const last = page[page.length - 1];
    return { tasks: page.map((e) => copy(e.data)), nextCursor: rows.length > q.limit && last ? encodeCursor(last.row) : null };
  }

  tasksWithStatus(statuses: TaskStatus[]): TaskRecord[] {
    return [...this.tasks.values()].filter((e) => statuses.includes(e.data.status)).map((e) => copy(e.data));
  }

  insertWorkspace(w: WorkspaceRecord): void {
    this.workspaces.set(w.id, copy(w));
  }

  getWorkspace(id: string): WorkspaceRecord | null {
    const w = this.workspaces.get(id);
    return w ? copy(w) : null;
  }

  updateWorkspace(w: WorkspaceRecord): void {
    if (this.workspaces.has(w.id)) this.workspaces.set(w.id, copy(w));
  }

  deleteWorkspace(id: string): void {
    this.workspaces.delete(id);
  }

  listWorkspaces(): WorkspaceRecord[] {
    return [...this.workspaces.values()].map(copy);
  }

  meta(key: string, init: () => string): string {
    if (!this.metaValues.has(key)) this.metaValues.set(key, init());
    return this.metaValues.get(key)!;
  }

  addEgressDecision(taskId: string, d: EgressDecision, max: number): number | null {
    const list = this.decisions.get(taskId) ?? [];
    if (list.length >= max) return null;
    list.push(copy(d));
    this.decisions.set(taskId, list);
    return list.length;
  }

  setEgressBytes(): void {}

  egressDecisions(taskId: string): { decisions: EgressDecision[]; dropped: number } {
    return { decisions: copy(this.decisions.get(taskId) ?? []), dropped: 0 };
  }

  close(): void {}
}

/**
 * The TaskWorkspaces port with no filesystem: a workspace is its record (in a MemoryStore, so the
 * HTTP workspace routes see it too) and its inline files. Holding, mounting and usage are no-ops;
 * a test that needs the files on disk uses the real Workspaces.
 */
export class MemoryWorkspaces implements TaskWorkspaces {
  private readonly files = new Map<string, Record<string, string>>();
  /** Mount holds per workspace (hold/adopt add one, release drops one). */
  readonly holds = new Map<string, number>();

  constructor(
    private readonly store: MemoryStore,
    private readonly limits: WorkspaceLimits,
  ) {}

  get(id: string): { id: string } {
    const w = /^ws_[A-Za-z0-9_-]{1,64}$/.test(id) ? this.store.getWorkspace(id) : null;
    if (!w) throw new AppError('WORKSPACE_NOT_FOUND', { id });
    return w;
  }

  reuse(id: string): void {
    const w = this.store.getWorkspace(id);
    if (w) this.store.updateWorkspace({ ...w, ephemeral: false });
  }

  async inspect(id: string): Promise<{ rootEntries: string[]; projectFile: string | null }> {
    const files = this.files.get(id) ?? {};
    return { rootEntries: Object.keys(files).filter((p) => !p.includes('/')), projectFile: files[PROJECT_FILE] ?? null };
  }

  async createFromFiles(files: Record<string, string>, markers: string[], tenant: string): Promise<{ id: string }> {
    const { bytes } = checkInlineFiles(files, this.limits);
    const now = new Date().toISOString();
    const id = newWorkspaceId();
    this.store.insertWorkspace({
      id,
      tenant,
      createdAt: now,
      files: Object.keys(files).length,
      bytes,
      markers,
      lastUsedAt: now,
      usedBytes: bytes,
      quotaBytes: 0,
      ephemeral: true,
    });
    this.files.set(id, { ...files });
    return { id };
  }

  async delete(id: string, busy: (id: string) => boolean): Promise<void> {
    this.get(id);
    if (busy(id)) throw new AppError('WORKSPACE_BUSY', { id, reason: 'a task is queued or running on it' });
    this.store.deleteWorkspace(id);
    this.files.delete(id);
  }

  async hold(id: string): Promise<string> {
    this.holds.set(id, (this.holds.get(id) ?? 0) + 1);
    return this.dir(id);
  }

  adopt(id: string): void {
    this.holds.set(id, (this.holds.get(id) ?? 0) + 1);
  }

  async release(id: string): Promise<void> {
    this.holds.set(id, (this.holds.get(id) ?? 1) - 1);
  }

  ensureHome(): void {}

  dir(id: string): string {
    return `/nonexistent/workspaces/${id}`;
  }

  touch(): void {}

  async afterTask(): Promise<{ full: boolean }> {
    return { full: false };
  }
}
