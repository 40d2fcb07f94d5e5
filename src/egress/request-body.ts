/**
 * Where a plain-HTTP request's body ends, so the egress proxy knows where the next request on the
 * same connection begins and can judge it before it is forwarded (pure, bounded). Only framings
 * that every HTTP/1.1 server reads the same way are accepted: a `Content-Length`, or
 * `Transfer-Encoding: chunked` alone; anything ambiguous (both, several differing lengths, other
 * codings) is refused, since a destination framing the bytes differently would see a request the
 * proxy never checked.
 */
export type BodyFraming = { kind: 'length'; bytes: number } | { kind: 'chunked' };

/** The framing the head declares, or why it is refused. No length and no coding: no body. */
export function bodyFraming(headers: readonly [string, string][], version: string): BodyFraming | { error: string } {
  const te = headers.filter(([n]) => n.toLowerCase() === 'transfer-encoding').map(([, v]) => v);
  const cl = headers.filter(([n]) => n.toLowerCase() === 'content-length').map(([, v]) => v);
  if (te.length > 0) {
    if (cl.length > 0) return { error: 'Transfer-Encoding together with Content-Length' };
    if (version !== 'HTTP/1.1') return { error: 'Transfer-Encoding in an HTTP/1.0 request' };
    if (te.length > 1 || te[0]!.toLowerCase() !== 'chunked') return { error: 'Transfer-Encoding other than chunked alone' };
    return { kind: 'chunked' };
  }
  // `Content-Length: 5, 5` and repeated equal fields mean one length; anything else is refused.
  const values = new Set(cl.flatMap((v) => v.split(',').map((s) => s.trim())));
  if (values.size === 0) return { kind: 'length', bytes: 0 };
  const [only] = [...values];
  if (values.size > 1 || !/^\d{1,15}$/.test(only!)) return { error: 'malformed or conflicting Content-Length' };
  return { kind: 'length', bytes: Number(only) };
}

/** A chunk-size line (with extensions) or a trailer field longer than this is refused. */
const MAX_LINE = 4096;

export type BodyStep =
  /** `body`: bytes of this request (to forward); `rest`: what follows it, once `done`. */
  | { kind: 'data'; body: Buffer; done: boolean; rest: Buffer }
  | { kind: 'error'; reason: string };

/**
 * Reads one request body as it arrives: `push` each chunk received, forward `body`, and once
 * `done` hand `rest` to the next request's head parser. Chunked bodies are passed on unchanged
 * (sizes, extensions and trailers included); only their boundaries are read.
 */
export class BodyReader {
  private state: 'length' | 'size' | 'data' | 'data-end' | 'trailer' | 'done';
  private remaining: number;
  private line = Buffer.alloc(0);
  private trailerBytes = 0;

  constructor(framing: BodyFraming, private readonly maxTrailerBytes: number) {
    this.state = framing.kind === 'chunked' ? 'size' : framing.bytes > 0 ? 'length' : 'done';
    this.remaining = framing.kind === 'length' ? framing.bytes : 0;
  }

  get done(): boolean {
    return this.state === 'done';
  }

  push(chunk: Buffer): BodyStep {
    let i = 0;
    while (i < chunk.length && this.state !== 'done') {
      if (this.state === 'length' || this.state === 'data') {
        const n = Math.min(this.remaining, chunk.length - i);
        i += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = this.state === 'length' ? 'done' : 'data-end';
        continue;
      }
      // A line: the chunk size, the CRLF after a chunk's data, or a trailer field.
      const lf = chunk.indexOf(0x0a, i);
      const end = lf < 0 ? chunk.length : lf + 1;
      this.line = Buffer.concat([this.line, chunk.subarray(i, end)]);
      i = end;
      if (this.line.length > MAX_LINE) return { kind: 'error', reason: 'chunk-size line or trailer field too long' };
      if (lf < 0) break;
      const text = this.line.toString('latin1');
      this.line = Buffer.alloc(0);
      if (!text.endsWith('\r\n')) return { kind: 'error', reason: 'bare LF in a chunked body' };
      const line = text.slice(0, -2);
      if (this.state === 'data-end') {
        if (line !== '') return { kind: 'error', reason: 'chunk data longer than its size' };
        this.state = 'size';
      } else if (this.state === 'size') {
        const m = /^([0-9A-Fa-f]{1,12})(;[\t\x20-\x7e]*)?$/.exec(line);
        if (!m) return { kind: 'error', reason: 'malformed chunk size' };
        this.remaining = parseInt(m[1]!, 16);
        this.state = this.remaining === 0 ? 'trailer' : 'data';
      } else {
        this.trailerBytes += text.length;
        if (this.trailerBytes > this.maxTrailerBytes) return { kind: 'error', reason: 'trailer too large' };
        if (line === '') this.state = 'done';
        else if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e]*$/.test(line)) return { kind: 'error', reason: 'malformed trailer field' };
      }
    }
    return { kind: 'data', body: chunk.subarray(0, i), done: this.state === 'done', rest: chunk.subarray(i) };
  }
}
