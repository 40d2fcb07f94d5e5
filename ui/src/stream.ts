/**
 * One task's WebSocket stream with reconnection: every frame carries `seq` (1, 2, ...); after a
 * dropped connection the stream reopens with `?after=<last seq seen>`, so the server replays
 * exactly what was missed, and a frame at or below the last seq (never expected) is dropped
 * rather than shown twice. The stream ends with the `exit` frame (then the server closes 1000).
 */

export interface Frame {
  seq?: number;
  type: string;
  [field: string]: unknown;
}

export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'ended' | 'stopped';

export interface StreamHandlers {
  frame(frame: Frame): void;
  state(state: StreamState, reconnects: number): void;
  /** An out-of-band error frame (about a message this page sent), or a failure to reconnect. */
  error(code: string, message: string): void;
  /** Before each reconnection: resolves false to give up (e.g. the task is gone or access ended). */
  beforeReconnect(): Promise<boolean>;
}

const MAX_DELAY_MS = 5000;

export class TaskStream {
  private ws: WebSocket | null = null;
  private lastSeq = 0;
  private ended = false;
  private stopped = false;
  private failures = 0;
  private reconnects = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly url: (after: number) => string,
    private readonly protocols: () => string[],
    private readonly on: StreamHandlers,
  ) {}

  get seq(): number {
    return this.lastSeq;
  }

  open(): void {
    if (this.stopped || this.ended) return;
    this.on.state(this.reconnects === 0 ? 'connecting' : 'reconnecting', this.reconnects);
    const protocols = this.protocols();
    const ws = protocols.length > 0 ? new WebSocket(this.url(this.lastSeq), protocols) : new WebSocket(this.url(this.lastSeq));
    this.ws = ws;
    ws.onopen = () => {
      this.failures = 0;
      this.on.state('live', this.reconnects);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let frame: Frame;
      try {
        frame = JSON.parse(ev.data) as Frame;
      } catch {
        return;
      }
      if (typeof frame.seq !== 'number') {
        if (frame.type === 'error') this.on.error(String(frame.code), String(frame.message));
        return;
      }
      if (frame.seq <= this.lastSeq) return;
      this.lastSeq = frame.seq;
      if (frame.type === 'exit') this.ended = true;
      this.on.frame(frame);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) return;
      if (this.ended) {
        this.on.state('ended', this.reconnects);
        return;
      }
      this.failures++;
      this.reconnects++;
      this.on.state('reconnecting', this.reconnects);
      const delay = Math.min(MAX_DELAY_MS, 250 * 2 ** Math.min(this.failures - 1, 5));
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.on.beforeReconnect().then(
          (go) => (go ? this.open() : this.stop()),
          () => this.open(),
        );
      }, delay);
    };
  }

  /** Sends a client frame (stdin, eof, cancel); false when the socket is not open. */
  send(frame: object): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000);
    this.on.state('stopped', this.reconnects);
  }
}
