// A container's log as the kubelet keeps it: line-based entries (stdout and stderr merged in
// arrival order), each stamped with a nanosecond time, served by pods/log. A line is logged once
// its newline arrives (a trailing line without one is logged, newline added, when the stream
// ends, as CRI logs do).
import type { ServerResponse } from 'node:http';
import { ApiError } from './status.js';

export type StreamName = 'stdout' | 'stderr';

/**
 * A fault on what pods/log serves (never on what attach sends): each logged line, newline
 * included, goes through it; null leaves the line out (as rotation drops old lines).
 */
export type LogEdit = (line: Buffer, pod: string) => Buffer | null;

interface Entry {
  ns: bigint;
  stream: StreamName;
  line: Buffer;
}

const baseWallNs = BigInt(Date.now()) * 1_000_000n;
const baseHr = process.hrtime.bigint();
let lastNs = 0n;
function nowNs(): bigint {
  let ns = baseWallNs + (process.hrtime.bigint() - baseHr);
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return ns;
}

/** Go's RFC3339Nano: trailing zeros of the fraction are dropped. */
export function formatNs(ns: bigint): string {
  const ms = Number(ns / 1_000_000n);
  const iso = new Date(ms).toISOString().slice(0, 19);
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0').replace(/0+$/, '');
  return `${iso}${frac ? '.' + frac : ''}Z`;
}

export function parseTimeNs(text: string): bigint | null {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!m) return null;
  const secs = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(secs)) return null;
  return BigInt(secs) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

export class PodLog {
  constructor(
    private readonly pod = '',
    private readonly edit: { fn: LogEdit | null } = { fn: null },
  ) {}

  private readonly entries: Entry[] = [];
  private readonly partial: Record<StreamName, Buffer> = { stdout: Buffer.alloc(0), stderr: Buffer.alloc(0) };
  private readonly followers = new Set<(e: Entry | null) => void>();
  private ended = false;

  append(stream: StreamName, chunk: Buffer): void {
    let data = Buffer.concat([this.partial[stream], chunk]);
    let nl = data.indexOf(10);
    while (nl >= 0) {
      this.push({ ns: nowNs(), stream, line: data.subarray(0, nl + 1) });
      data = data.subarray(nl + 1);
      nl = data.indexOf(10);
    }
    this.partial[stream] = Buffer.from(data);
  }

  /** The container's streams closed: flush partial lines and end every follower. */
  end(): void {
    if (this.ended) return;
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.partial[stream].length > 0) this.push({ ns: nowNs(), stream, line: Buffer.concat([this.partial[stream], Buffer.from('\n')]) });
      this.partial[stream] = Buffer.alloc(0);
    }
    this.ended = true;
    for (const f of [...this.followers]) f(null);
    this.followers.clear();
  }

  private push(e: Entry): void {
    this.entries.push(e);
    for (const f of this.followers) f(e);
  }

  /** Serves pods/log with the query parameters kubelet honours. */
  serve(query: Record<string, string>, res: ServerResponse): void {
    const follow = query.follow === 'true' || query.follow === '1';
    const timestamps = query.timestamps === 'true' || query.timestamps === '1';
    let since: bigint | null = null;
    if (query.sinceTime) {
      since = parseTimeNs(query.sinceTime);
      if (since === null) throw new ApiError(400, `parsing time "${query.sinceTime}" as "2006-01-02T15:04:05Z07:00": cannot parse`, 'BadRequest');
    } else if (query.sinceSeconds) {
      const s = Number(query.sinceSeconds);
      if (!Number.isInteger(s) || s < 1) throw new ApiError(422, 'sinceSeconds: Invalid value: must be greater than 0', 'Invalid');
      since = nowNs() - BigInt(s) * 1_000_000_000n;
    }
    const tail = query.tailLines !== undefined ? Number(query.tailLines) : undefined;
    if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw new ApiError(422, 'tailLines: Invalid value: must be greater than or equal to 0', 'Invalid');
    let budget = query.limitBytes !== undefined ? Number(query.limitBytes) : Infinity;
    if (!(budget > 0)) throw new ApiError(422, 'limitBytes: Invalid value: must be greater than 0', 'Invalid');

    res.writeHead(200, { 'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      this.followers.delete(emit);
      res.end();
    };
    const emit = (e: Entry | null): void => {
      if (done) return;
      if (e === null) return finish();
      if (since !== null && e.ns < since) return;
      const line = this.edit.fn ? this.edit.fn(e.line, this.pod) : e.line;
      if (line === null) return;
      let out = timestamps ? Buffer.concat([Buffer.from(formatNs(e.ns) + ' '), line]) : line;
      if (out.length >= budget) {
        out = out.subarray(0, budget);
        res.write(out);
        return finish();
      }
      budget -= out.length;
      res.write(out);
    };
    let backlog = this.entries.filter((e) => since === null || e.ns >= since);
    if (tail !== undefined) backlog = tail === 0 ? [] : backlog.slice(-tail);
    for (const e of backlog) emit(e);
    if (!follow || this.ended) return finish();
    this.followers.add(emit);
    res.on('close', () => {
      done = true;
      this.followers.delete(emit);
    });
  }
}
