import { once } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import type { V1Pod } from '@kubernetes/client-node';
import type WebSocket from 'isomorphic-ws';
import { EngineError, type RunningSandbox, type SandboxExit, type SandboxHandlers, type StreamName } from '../engine.js';
import { ArchiveDecoder, hasEndLine, markerLineAt, type ArchiveResult } from './archive-text.js';
import { BoundarySplitter, boundaryMarker, gateHeader } from './gate.js';
import { CONTAINER_NAME } from './names.js';
import { isTerminal } from './pods.js';
import type { Spooled, WriteBackLimits } from './workspace-io.js';
import { writeBack } from './workspace-io.js';
import type { KubeCalls } from './calls.js';

/** After the pod ended, how long its attach stream may take to deliver the last output and close. */
const STREAM_SETTLE_MS = 5_000;
/** Attempts to attach again after an attach stream dropped while the pod runs. */
const REATTACH_ATTEMPTS = 20;
const REATTACH_DELAY_MS = 250;
const V5 = 'v5.channel.k8s.io';
/** How long the exit waits for the pod to be deleted after its Job. */
const REMOVAL_MS = 10_000;
/** Log text is decoded in slices of this size (the decoder holds a slice as a string). */
const LOG_SLICE = 64 * 1024;
const NOT_WRITTEN_BACK = 'the workspace was not written back (its files are as before the task)';

interface Archive {
  decoder: ArchiveDecoder;
  input: PassThrough;
  /** Null once the files were replaced, else why not. */
  done: Promise<string | null>;
}

export interface PodTaskOptions {
  job: string;
  pod: string;
  /** The write-back boundary, or null (nothing comes back). */
  boundary: string | null;
  /** The host workspace the write-back replaces (null: none). */
  workspaceDir: string | null;
  writeBackLimits: WriteBackLimits;
}

/**
 * Follows one task pod: attach (stdout and stderr apart), the stdin gate, attach again after a
 * dropped stream with the gap filled from pods/log (combined), the write-back, and the exit from
 * the pod's status. The exit resolves once the Job is deleted.
 *
 * The write-back is the base64 text after the boundary line (archive-text.ts): decoded from the
 * attach stream as it arrives, or, when the server was not attached as it came (restart, dropped
 * stream, a pod that ended before it was adopted), from pods/log once the pod ended. Either way
 * the files are replaced only when the end line matches what arrived.
 */
export class PodTask {
  private ws: WebSocket | null = null;
  private stdin: PassThrough | null = null;
  private lastAt = 0;
  /** Output that arrives while a gap is being filled waits here, to keep the order. */
  private queue: [StreamName, Buffer][] | null = null;
  private readonly splitter: BoundarySplitter;
  /** The write-back as it comes over the attach stream. */
  private archive: Archive | null = null;
  /** The write-back is read from pods/log once the pod ended (with the log text when it was read to its end), and why. */
  private fromLog: { text: Buffer | null; why: string } | null = null;
  private reattaching: Promise<void> | null = null;
  private stopping = false;
  private detached = false;
  private ended = false;
  private readonly detach$ = new AbortController();
  readonly exit: Promise<SandboxExit>;

  constructor(
    private readonly k: KubeCalls,
    private readonly o: PodTaskOptions,
    private readonly handlers: SandboxHandlers,
    since: number,
  ) {
    this.lastAt = since;
    this.splitter = new BoundarySplitter(
      o.boundary ? boundaryMarker(o.boundary) : null,
      (d) => this.handlers.onOutput('stdout', d),
      (d) => this.toWriteBack(d),
    );
    this.exit = this.watchExit();
    // A detached follower's exit never resolves; nobody awaits it then.
    this.exit.catch(() => undefined);
  }

  /** Attaches; with stdin, the gate is opened with the header and the spooled workspace. */
  async open(gate: { spool: Spooled; stdin: boolean } | null): Promise<void> {
    await this.attach(gate !== null);
    if (!gate) return;
    const stdin = this.stdin!;
    stdin.write(gateHeader(gate.spool.bytes, this.o.boundary, gate.stdin));
    for await (const chunk of gate.spool.open()) stdin.write(chunk as Buffer);
    if (!gate.stdin) this.endStdin();
    await this.k.markGateOpened(this.o.job);
  }

  private async attach(withStdin: boolean): Promise<void> {
    const out = (stream: StreamName) =>
      new Writable({
        write: (chunk: Buffer, _enc, cb) => {
          this.received(stream, Buffer.from(chunk));
          cb();
        },
      });
    const stdin = withStdin ? new PassThrough() : null;
    let ws: WebSocket;
    try {
      ws = await this.k.attach(this.o.pod, out('stdout'), out('stderr'), stdin);
    } catch (err) {
      throw attachError(err, this.k.namespace);
    }
    this.ws = ws;
    this.stdin = stdin;
    ws.on('close', () => this.onClose(ws));
  }

  private received(stream: StreamName, data: Buffer): void {
    this.lastAt = Date.now();
    if (this.queue) this.queue.push([stream, data]);
    else this.deliver(stream, data);
  }

  private deliver(stream: StreamName, data: Buffer): void {
    if (this.ended || this.detached) return;
    if (stream === 'stdout') this.splitter.push(data);
    else {
      this.splitter.flush();
      this.handlers.onOutput('stderr', data);
    }
    // The position is when the last output was received, and only while nothing is held back and
    // the write-back has not begun: a later run reads pods/log on from there.
    if (!this.splitter.holding && !this.splitter.passed) this.handlers.onPosition?.({ ino: 0, offset: this.lastAt });
  }

  private toWriteBack(data: Buffer): void {
    if (!this.o.workspaceDir || this.fromLog) return;
    this.archive ??= this.startArchive(this.o.workspaceDir);
    this.archive.decoder.push(data);
  }

  /** A decoder feeding a write-back that replaces the files only once the end line matched. */
  private startArchive(dir: string): Archive {
    const input = new PassThrough();
    let settle!: (r: ArchiveResult) => void;
    const verified = new Promise<ArchiveResult>((r) => (settle = r)).then((r) => {
      if (!r.ok) throw new Error(r.reason);
    });
    verified.catch(() => undefined);
    const decoder = new ArchiveDecoder(
      this.o.boundary!,
      (data) => input.write(data),
      (r) => {
        settle(r);
        input.end();
      },
    );
    const done = writeBack(input, dir, this.o.writeBackLimits, verified).then(
      () => null,
      (err: unknown) => {
        // A failed verification is the reason, not what the tar reader made of a cut archive.
        // (The decoder goes on to the end line: it tells whether the text itself was whole.)
        const r = decoder.result;
        if (r && !r.ok) return r.reason;
        return err instanceof Error ? err.message : String(err);
      },
    );
    return { decoder, input, done };
  }

  private onClose(ws: WebSocket): void {
    if (ws !== this.ws) return;
    this.ws = null;
    this.stdin = null;
    if (this.ended || this.detached || this.stopping) return;
    const now = this.k.pods.current(this.o.job);
    if (now && (now.deleted || isTerminal(now.pod))) return;
    this.reattaching ??= this.rejoin().finally(() => (this.reattaching = null));
  }

  /**
   * After a dropped attach stream or a server restart, while the pod runs: attach again (without
   * stdin: a pod's stdin is closed with its first attach) and fill the gap since the last output
   * received from pods/log, marked combined; output arriving meanwhile waits behind the gap.
   */
  async rejoin(): Promise<void> {
    const since = this.lastAt;
    this.queue = [];
    let attached = false;
    for (let i = 0; i < REATTACH_ATTEMPTS && !this.ended && !this.detached && !this.stopping; i++) {
      try {
        await this.attach(false);
        attached = true;
        break;
      } catch {
        const now = this.k.pods.current(this.o.job);
        if (!now || now.deleted || isTerminal(now.pod)) break;
        await new Promise((r) => setTimeout(r, REATTACH_DELAY_MS));
      }
    }
    await this.fillGap(since, attached ? Date.now() : Infinity);
    const queued = this.queue ?? [];
    this.queue = null;
    for (const [stream, data] of queued) this.deliver(stream, data);
  }

  /** Adopting a pod that had already ended: everything since `sinceMs` comes from pods/log. */
  async catchUp(sinceMs: number): Promise<void> {
    const filling = this.fillGap(sinceMs, Infinity);
    this.reattaching = filling.finally(() => (this.reattaching = null));
    await filling;
  }

  /**
   * Output stamped in (sinceMs, untilMs) from pods/log, delivered as combined output, cut at the
   * boundary line: what follows it is the write-back, taken from pods/log once the pod ended.
   */
  async fillGap(sinceMs: number, untilMs: number): Promise<void> {
    let text: Buffer;
    try {
      text = await this.k.readLog(this.o.pod, sinceMs, untilMs);
    } catch (err) {
      this.handlers.onLost?.();
      this.handlers.onNote?.(`output written while the server was not attached is lost: pods/log could not be read (${err instanceof Error ? err.message : String(err)})`);
      return;
    }
    const b = this.o.boundary;
    if (b) {
      if (this.splitter.passed) {
        // The write-back was coming over the attach stream when it dropped: what pods/log holds
        // since is the rest of it, not output.
        const why = 'the attach stream dropped while the archive came over it';
        this.archive?.decoder.fail(why);
        this.fromLog ??= { text: null, why };
        return;
      }
      const at = markerLineAt(text, b);
      if (at >= 0) {
        this.splitter.skip();
        this.fromLog = { text: untilMs === Infinity ? text.subarray(at) : null, why: 'the server was not attached when the task ended' };
        text = text.subarray(0, Math.max(0, at - 1));
      } else if (hasEndLine(text, b)) {
        // The boundary line came before `sinceMs` (a server before this one received it): what
        // follows is the write-back, not output.
        this.splitter.skip();
        this.fromLog = { text: null, why: 'the server was not attached when the task ended' };
        text = Buffer.alloc(0);
      }
    }
    if (text.length === 0) return;
    this.handlers.onNote?.('part of the output was recovered from pods/log after the attach stream was lost: that part is stdout and stderr combined');
    if (this.handlers.onCombined) this.handlers.onCombined(text);
    else this.handlers.onOutput('stdout', text);
  }

  private async watchExit(): Promise<SandboxExit> {
    const forever = 2 ** 31 - 1;
    const end = await this.k.pods.waitFor(this.o.job, (p, deleted) => deleted || isTerminal(p), forever, this.detach$.signal);
    // The attach stream ends after the last output; a stream that dropped is attached again first.
    const settled = Date.now() + STREAM_SETTLE_MS;
    while (this.ws && Date.now() < settled) await new Promise((r) => setTimeout(r, 20));
    if (this.reattaching) await this.reattaching;
    if (this.ws) this.ws.close();
    this.splitter.end();
    await this.finishWriteBack(end.pod, end.deleted);
    this.ended = true;
    const exit = exitOf(end.pod, end.deleted, this.stopping);
    await this.k.removeJob(this.o.job).catch(() => undefined);
    // The exit is reported once the pod is gone (the garbage collector deletes it after its Job).
    await this.k.pods.waitFor(this.o.job, (_p, deleted) => deleted, REMOVAL_MS).catch(() => undefined);
    this.k.pods.forget(this.o.job);
    return exit;
  }

  /**
   * After the pod ended: the write-back that came over the attach stream is complete and verified,
   * or it is taken from pods/log (the server was not attached, the stream dropped, or the archive
   * over it did not verify). The task's notes say where it came from, or why it was not written.
   */
  private async finishWriteBack(pod: V1Pod, deleted: boolean): Promise<void> {
    const dir = this.o.workspaceDir;
    if (!this.o.boundary || !dir || this.detached) return;
    let why = this.fromLog?.why;
    let overAttach: string | null = null;
    if (!this.fromLog) {
      if (this.splitter.passed) this.archive ??= this.startArchive(dir);
      if (this.archive) {
        this.archive.decoder.end();
        overAttach = await this.archive.done;
        if (overAttach === null) return;
        // The archive came whole and was refused (limits, paths), or the pod said it could not
        // make one: pods/log holds the same.
        const r = this.archive.decoder.result;
        if (r?.ok || (r && !r.ok && r.byPod)) {
          this.handlers.onNote?.(`${NOT_WRITTEN_BACK}: ${overAttach}`);
          return;
        }
        if (this.stopping || deleted) {
          this.handlers.onNote?.(`${NOT_WRITTEN_BACK}: ${overAttach}`);
          return;
        }
        why = `the archive over the attach stream was not whole: ${overAttach}`;
      } else if (this.stopping || deleted || !isTerminal(pod)) {
        // Stopped or gone before the command ended: the pod sent nothing back.
        return;
      } else {
        why = 'the archive did not arrive over the attach stream';
      }
    }
    const failed = await this.writeBackFromLog(dir);
    if (failed === null) this.handlers.onNote?.(`the workspace was written back from pods/log (${why})`);
    else this.handlers.onNote?.(`${NOT_WRITTEN_BACK}: ${overAttach ? `over the attach stream: ${overAttach}; from pods/log: ` : ''}${failed}`);
  }

  /** The write-back from pods/log (the pod has ended): null once written back, else why not. */
  private async writeBackFromLog(dir: string): Promise<string | null> {
    const b = this.o.boundary!;
    let text = this.fromLog?.text ?? null;
    if (!text) {
      try {
        text = await this.k.readLog(this.o.pod, 0, Infinity);
      } catch (err) {
        return `pods/log could not be read (${err instanceof Error ? err.message : String(err)})`;
      }
    }
    const at = markerLineAt(text, b);
    if (at < 0) {
      return hasEndLine(text, b)
        ? 'pods/log no longer holds the start of the archive (the kubelet may have rotated the log)'
        : 'the pod ended before it sent the workspace back';
    }
    const archive = this.startArchive(dir);
    for (let i = at + b.length + 1; i < text.length && !archive.decoder.result; i += LOG_SLICE) {
      archive.decoder.push(text.subarray(i, Math.min(text.length, i + LOG_SLICE)));
      const input = archive.input;
      if (input.writableNeedDrain && !input.destroyed && !input.writableEnded) await Promise.race([once(input, 'drain'), archive.done]);
    }
    archive.decoder.end();
    return archive.done;
  }

  /** For the start's failure path and detach: stop listening (the pod stays as it is). */
  private quiet(): void {
    this.detached = true;
    this.detach$.abort();
    const ws = this.ws;
    this.ws = null;
    ws?.close();
  }

  endStdin(): void {
    const stdin = this.stdin;
    if (!stdin || stdin.writableEnded) return;
    // v5 carries a close of stdin; on older protocols closing stdin means closing the stream,
    // which the follower then attaches again (the pod's stdin is closed with its first attach).
    if (this.ws?.protocol === V5) stdin.end();
    else this.ws?.close();
  }

  sandbox(): RunningSandbox {
    return {
      containerId: this.o.job,
      exit: this.exit,
      writeStdin: (data) => {
        if (!this.stdin || this.stdin.writableEnded) return false;
        this.stdin.write(data);
        return true;
      },
      endStdin: () => this.endStdin(),
      stop: async (grace) => {
        this.stopping = true;
        await this.k.stopPod(this.o.job, this.o.pod, grace);
      },
      detach: async () => this.quiet(),
    };
  }

  async abandon(): Promise<void> {
    this.quiet();
  }
}

function exitOf(pod: V1Pod, deleted: boolean, stopped: boolean): SandboxExit {
  const terminated = pod.status?.containerStatuses?.find((c) => c.name === CONTAINER_NAME)?.state?.terminated;
  const exitCode = terminated?.exitCode ?? null;
  const finished = terminated?.finishedAt ? new Date(terminated.finishedAt) : null;
  return {
    exitCode,
    oomKills: terminated?.reason === 'OOMKilled' ? 1 : 0,
    finishedAt: finished && !Number.isNaN(finished.getTime()) ? finished : null,
    vanished: deleted && exitCode === null && !stopped && !isTerminal(pod),
  };
}

/** A refused attach names what the server's account lacks. */
export function attachError(err: unknown, namespace: string): EngineError {
  const text = err instanceof Error ? err.message : String((err as { message?: unknown })?.message ?? err);
  if (/\b403\b/.test(text)) {
    return new EngineError(`the Kubernetes API refused pods/attach (403 Forbidden): the server's account needs get and create on pods/attach in namespace ${namespace}`);
  }
  if (/\b401\b/.test(text)) return new EngineError('the Kubernetes API refused pods/attach (401 Unauthorized): check the kubeconfig credentials', true);
  return new EngineError(`attaching to the task pod failed: ${text}`);
}
