import { ACTIVE, getJson, type Task, type TaskPage } from './api.js';
import { byId, el, formatDuration, formatTime } from './dom.js';

const POLL_MS = 2000;

/**
 * The task list: newest first, a page at a time (the server's cursor), filtered by status, and
 * refreshed every POLL_MS while the page is visible so that running tasks move on.
 */
export class TaskList {
  /** Cursors of the pages before the current one (their first entry is the first page's: none). */
  private readonly previous: (string | null)[] = [];
  private cursor: string | null = null;
  private next: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private generation = 0;

  constructor(
    private readonly open: (id: string) => void,
    private readonly fail: (err: unknown) => void,
    private readonly pageSize = 10,
  ) {
    byId<HTMLSelectElement>('status-filter').addEventListener('change', () => {
      this.previous.length = 0;
      this.cursor = null;
      void this.refresh();
    });
    byId('older').addEventListener('click', () => {
      if (!this.next) return;
      this.previous.push(this.cursor);
      this.cursor = this.next;
      void this.refresh();
    });
    byId('newer').addEventListener('click', () => {
      if (this.previous.length === 0) return;
      this.cursor = this.previous.pop() ?? null;
      void this.refresh();
    });
  }

  /** Loads and draws the current page; resolves true once drawn, false on an error (shown). */
  async refresh(): Promise<boolean> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const gen = ++this.generation;
    const q = new URLSearchParams({ limit: String(this.pageSize) });
    const status = byId<HTMLSelectElement>('status-filter').value;
    if (status) q.set('status', status);
    if (this.cursor) q.set('cursor', this.cursor);
    let ok = true;
    try {
      const page = await getJson<TaskPage>(`/v1/tasks?${q}`);
      if (gen !== this.generation) return true;
      this.draw(page);
    } catch (err) {
      ok = false;
      this.fail(err);
    }
    if (gen === this.generation) this.timer = setTimeout(() => void this.refresh(), POLL_MS);
    return ok;
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.generation++;
  }

  private draw(page: TaskPage): void {
    this.next = page.nextCursor;
    const body = byId('tasks').querySelector('tbody')!;
    const rows = page.tasks.map((t) => this.row(t));
    body.replaceChildren(...rows);
    byId('tasks-empty').hidden = page.tasks.length > 0;
    byId<HTMLButtonElement>('older').disabled = !this.next;
    byId<HTMLButtonElement>('newer').disabled = this.previous.length === 0;
  }

  private row(t: Task): HTMLTableRowElement {
    const tr = el('tr');
    tr.dataset.taskId = t.id;
    tr.dataset.status = t.status;
    tr.append(el('td', t.status, `status status-${t.status}`));
    const cmd = el('td', undefined, 'command');
    const open = el('button', t.command.length > 200 ? `${t.command.slice(0, 200)}…` : t.command, 'link');
    open.type = 'button';
    open.setAttribute('aria-label', `Open task ${t.id}: ${t.command.slice(0, 80)}`);
    open.addEventListener('click', () => this.open(t.id));
    cmd.append(open);
    tr.append(cmd);
    tr.append(el('td', t.image.name));
    tr.append(el('td', formatTime(t.startedAt)));
    const running = ACTIVE.has(t.status) && t.startedAt ? Date.now() - Date.parse(t.startedAt) : null;
    tr.append(el('td', formatDuration(t.durationMs ?? running)));
    tr.append(el('td', t.exitCode === null ? '' : String(t.exitCode)));
    return tr;
  }
}
