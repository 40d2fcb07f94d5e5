import WebSocket from 'ws';
import { ConnectionError, errorFromBody, SandboxShiftError } from './errors.js';
import type { ErrorFrame, StreamFrame } from './types.js';

export interface TaskStreamOptions {
  /** Start after this frame seq (0: from the first frame). */
  after?: number;
  /** Headers for the WebSocket upgrade (Authorization). */
  headers?: Record<string, string>;
  /** WebSocket subprotocols to offer; none when empty. */
  protocols?: string[];
  /** Out-of-band error frames (a stdin frame the server refused); not part of the task log. */
  onServerError?: (e: ErrorFrame) => void;
  /** How long reconnecting may keep failing before the iterator throws ConnectionError. */
  reconnectForMs?: number;
  signal?: AbortSignal;
}

type Item = { frame: StreamFrame } | { end: true } | { error: Error };

/**
 * A task's frames over GET /v1/tasks/:id/stream, iterated with `for await`. A dropped connection
 * (any close before the exit frame) is reopened with `?after=<last seq>`, and frames at or below
 * the last seq seen are skipped, so the caller sees every frame once, in order, up to `exit`.
 * Stdin and cancel frames go over the current connection; sent while reconnecting, they wait for
 * the next one. The protocol does not acknowledge them: one written into a connection that is
 * dropping at that moment (before the client has noticed) can be lost.
 */
export class TaskStream implements AsyncIterable<StreamFrame> {
  private lastSeq: number;
  private ws: WebSocket | null = null;
  private items: Item[] = [];
  private wake: (() => void) | null = null;
  private done = false;
  private pending: string[] = [];
  private failingSince: number | null = null;
  private closedByUs = false;
  private connections = 0;

  constructor(
    private readonly url: string,
    private readonly opts: TaskStreamOptions = {},
  ) {
    this.lastSeq = opts.after ?? 0;
    opts.signal?.addEventListener('abort', () => this.close(), { once: true });
    this.connect();
  }

  /** The seq of the last frame delivered. */
  get seq(): number {
    return this.lastSeq;
  }

  /** How many times the stream was reopened after a dropped connection. */
  get reconnects(): number {
    return Math.max(0, this.connections - 1);
  }

  /** True while no connection is open and one is being (re)opened: what is sent now waits for it. */
  get connecting(): boolean {
    return !this.done && this.ws?.readyState !== WebSocket.OPEN;
  }

  /** Sends UTF-8 text to the task's stdin (the task must have been submitted with stdin: true). */
  sendStdin(data: string): void {
    this.send(JSON.stringify({ type: 'stdin', data }));
  }

  /** Closes the task's stdin. */
  endStdin(): void {
    this.send(JSON.stringify({ type: 'stdin', eof: true }));
  }

  /** Asks the server to cancel the task; its exit frame still arrives. */
  cancel(): void {
    this.send(JSON.stringify({ type: 'cancel' }));
  }

  /** Stops iterating and closes the connection (the task goes on). */
  close(): void {
    this.closedByUs = true;
    this.finish({ end: true });
    this.ws?.close(1000);
  }

  /** Bytes the current connection has queued but not yet sent (for pacing stdin). */
  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  private send(text: string): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(text);
    else this.pending.push(text);
  }

  private push(item: Item): void {
    this.items.push(item);
    this.wake?.();
    this.wake = null;
  }

  private finish(item: Item): void {
    if (this.done) return;
    this.done = true;
    this.push(item);
  }

  private connect(): void {
    const sep = this.url.includes('?') ? '&' : '?';
    const ws = new WebSocket(`${this.url}${sep}after=${this.lastSeq}`, this.opts.protocols ?? [], { headers: this.opts.headers });
    this.ws = ws;
    let refused = false;
    ws.on('open', () => {
      this.connections++;
      this.failingSince = null;
      for (const text of this.pending.splice(0)) ws.send(text);
    });
    ws.on('unexpected-response', (_req, res) => {
      // The server refused the upgrade with a JSON error (unknown task, bad query, too many streams).
      refused = true;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        const err = errorFromBody(res.statusCode ?? 0, text);
        if (err.code === 'TOO_MANY_STREAMS') this.retry(err);
        else this.finish({ error: err });
      });
      res.on('error', () => this.retry(new ConnectionError('stream refused and its answer was lost')));
    });
    ws.on('message', (raw) => {
      let msg: StreamFrame | ErrorFrame;
      try {
        msg = JSON.parse(raw.toString()) as StreamFrame | ErrorFrame;
      } catch {
        return;
      }
      if (msg.type === 'error') {
        this.opts.onServerError?.(msg);
        return;
      }
      if (msg.seq <= this.lastSeq) return; // already delivered before a reconnect
      this.lastSeq = msg.seq;
      this.push({ frame: msg });
      if (msg.type === 'exit') {
        this.finish({ end: true });
        ws.close(1000);
      }
    });
    ws.on('error', () => {
      // 'close' follows; reconnecting happens there.
    });
    ws.on('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.done || this.closedByUs || refused) return;
      this.retry(new ConnectionError('the task stream was closed before the task ended'));
    });
  }

  private retry(err: Error): void {
    if (this.done) return;
    const now = Date.now();
    this.failingSince ??= now;
    if (now - this.failingSince > (this.opts.reconnectForMs ?? 30_000)) {
      this.finish({ error: err instanceof SandboxShiftError ? err : new ConnectionError(`cannot reconnect to the task stream: ${err.message}`, err) });
      return;
    }
    const delay = Math.min(2000, 100 * 2 ** Math.min(5, Math.floor((now - this.failingSince) / 500)));
    setTimeout(() => {
      if (!this.done) this.connect();
    }, delay).unref();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamFrame> {
    try {
      for (;;) {
        const item = this.items.shift();
        if (!item) {
          await new Promise<void>((r) => (this.wake = r));
          continue;
        }
        if ('frame' in item) yield item.frame;
        else if ('error' in item) throw item.error;
        else return;
      }
    } finally {
      if (!this.done) this.close();
    }
  }
}
