import { ACTIVE, ApiError, getJson, postJson, request, wsProtocols, wsUrl, type Task } from './api.js';
import { byId, formatDuration } from './dom.js';
import { TaskStream, type Frame, type StreamState } from './stream.js';
import { OutputTerminal } from './terminal.js';

const STATE_TEXT: Record<StreamState, string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  ended: 'ended',
  stopped: 'closed',
};

/**
 * One task: its live output in the terminal, status and exit as they change, cancel, stdin for
 * a task started with stdin, and the workspace archive download (fetched with the key, saved
 * from a blob).
 */
export class TaskView {
  private task: Task | null = null;
  private stream: TaskStream | null = null;
  private terminal: OutputTerminal | null = null;
  private readonly section = byId('task-view');

  constructor(
    private readonly fail: (err: unknown) => void,
    private readonly changed: () => void,
  ) {
    byId('cancel').addEventListener('click', () => void this.cancel());
    byId('download').addEventListener('click', () => void this.download());
    byId('close-task').addEventListener('click', () => {
      this.close();
      if (location.hash) history.replaceState(null, '', location.pathname + location.search);
      byId('command').focus();
    });
    byId('stdin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const input = byId<HTMLInputElement>('stdin-input');
      if (this.send({ type: 'stdin', data: `${input.value}\n` })) input.value = '';
    });
    byId('stdin-eof').addEventListener('click', () => this.send({ type: 'stdin', eof: true }));
  }

  get id(): string | null {
    return this.task?.id ?? null;
  }

  async open(id: string): Promise<void> {
    this.close();
    let task: Task;
    try {
      task = await getJson<Task>(`/v1/tasks/${encodeURIComponent(id)}`);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.task = task;
    byId('task-id').textContent = task.id;
    byId('task-command').textContent = task.command;
    this.section.hidden = false;
    this.section.dataset.taskId = task.id;
    this.section.dataset.reconnects = '0';
    this.showTask(task);
    this.terminal = new OutputTerminal(byId('terminal'));
    const path = `/v1/tasks/${encodeURIComponent(task.id)}/stream`;
    this.stream = new TaskStream((after) => wsUrl(after > 0 ? `${path}?after=${after}` : path), wsProtocols, {
      frame: (f) => this.frame(f),
      state: (s, n) => {
        byId('task-conn').textContent = STATE_TEXT[s];
        this.section.dataset.conn = s;
        this.section.dataset.reconnects = String(n);
      },
      error: (code, message) => this.fail(new ApiError(code, message, 0)),
      beforeReconnect: () => this.stillThere(),
    });
    this.stream.open();
    // Focus moves to the view (keyboard and screen reader users land on it), and it scrolls into
    // sight: the terminal renders only while it is visible.
    byId('task-heading').focus({ preventScroll: true });
    this.section.scrollIntoView({ block: 'start' });
  }

  close(): void {
    this.stream?.stop();
    this.stream = null;
    this.terminal?.dispose();
    this.terminal = null;
    this.task = null;
    this.section.hidden = true;
    delete this.section.dataset.taskId;
  }

  /** Before a reconnection: the task is still readable (a 401 or 404 ends the view's stream). */
  private async stillThere(): Promise<boolean> {
    if (!this.task) return false;
    try {
      this.showTask(await getJson<Task>(`/v1/tasks/${encodeURIComponent(this.task.id)}`));
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        this.fail(err);
        return false;
      }
      return true;
    }
  }

  private frame(f: Frame): void {
    if (!this.task) return;
    if (f.type === 'status') {
      this.showTask({ ...this.task, status: String(f.status) });
    } else if (f.type === 'exit') {
      this.showTask({
        ...this.task,
        status: String(f.status),
        exitCode: typeof f.exitCode === 'number' ? f.exitCode : null,
        reason: typeof f.reason === 'string' ? f.reason : null,
        durationMs: typeof f.durationMs === 'number' ? f.durationMs : null,
      });
      this.changed();
    } else {
      this.terminal?.write(f);
    }
    this.section.dataset.seq = String(f.seq ?? '');
  }

  private showTask(task: Task): void {
    this.task = task;
    const status = byId('task-status');
    status.textContent = task.status;
    status.className = `status status-${task.status}`;
    this.section.dataset.status = task.status;
    const parts: string[] = [];
    if (task.exitCode !== null) parts.push(String(task.exitCode));
    if (task.reason) parts.push(`(${task.reason})`);
    if (task.durationMs !== null) parts.push(`after ${formatDuration(task.durationMs)}`);
    byId('task-exit').textContent = parts.join(' ') || '—';
    const active = ACTIVE.has(task.status);
    byId<HTMLButtonElement>('cancel').disabled = !active;
    byId('stdin-form').hidden = !(task.stdin && active);
  }

  private send(frame: object): boolean {
    if (this.stream?.send(frame)) return true;
    this.fail(new ApiError('NOT_CONNECTED', 'the stream is not connected; try again in a moment', 0));
    return false;
  }

  private async cancel(): Promise<void> {
    if (!this.task) return;
    try {
      this.showTask(await postJson<Task>(`/v1/tasks/${encodeURIComponent(this.task.id)}/cancel`));
      this.changed();
    } catch (err) {
      this.fail(err);
    }
  }

  private async download(): Promise<void> {
    if (!this.task) return;
    const ws = this.task.workspaceId;
    try {
      const res = await request('GET', `/v1/workspaces/${encodeURIComponent(ws)}/archive`);
      const url = URL.createObjectURL(await res.blob());
      const a = document.createElement('a');
      a.href = url;
      a.download = `${ws}.tar.gz`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      this.fail(err);
    }
  }
}
