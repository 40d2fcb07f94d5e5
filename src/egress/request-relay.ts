import type { Socket } from 'node:net';
import { BodyReader, type BodyFraming } from './request-body.js';
import { parseRequestHead, type ParsedHead } from './request-head.js';

export interface RequestRelay {
  client: Socket;
  /** This request's destination, sent its head already (with `Connection: close`). */
  upstream: Socket;
  framing: BodyFraming;
  /** Bytes the client sent after the head. */
  first: Buffer;
  maxHeaderBytes: number;
  /** Body bytes forwarded to the destination. */
  onUp(bytes: number): void;
  /** The destination has finished its response (it closed): the request is over. */
  onResponseEnd(): void;
  /**
   * The client sent another request on the connection and the previous response has ended: judge
   * it as a first one (`rest`: the bytes after its head). The connection is the caller's again.
   */
  onNext(head: ParsedHead, rest: Buffer): void;
  /** Nothing more to relay on the connection: it ends. */
  onEnd(): void;
}

/**
 * One plain-HTTP request on a client connection, forwarded to its own destination connection.
 * Only this request's body (framed by its head) reaches the destination. What the client sends
 * after it is read as the next request's head, held (the client paused) until the destination has
 * closed after its response, and then handed back to be judged, so no byte of a later request is
 * relayed unchecked and answers keep their order.
 */
export function relayRequest(r: RequestRelay): void {
  const { client, upstream } = r;
  const body = new BodyReader(r.framing, r.maxHeaderBytes);
  let next = Buffer.alloc(0);
  let pending: { head: ParsedHead; rest: Buffer } | null = null;
  let responded = false;
  let finished = false;

  const finish = (then: () => void) => {
    if (finished) return;
    finished = true;
    client.off('data', onData);
    client.off('end', onClientEnd);
    upstream.off('data', onUpstreamData);
    then();
  };
  const onUpstreamData = (c: Buffer) => {
    if (!client.write(c)) {
      upstream.pause();
      client.once('drain', () => upstream.resume());
    }
  };
  const onData = (chunk: Buffer) => {
    if (!body.done) {
      const step = body.push(chunk);
      // Framing the client broke: where its next request starts can no longer be known.
      if (step.kind === 'error') return finish(r.onEnd);
      if (step.body.length > 0 && !responded) {
        r.onUp(step.body.length);
        if (!upstream.write(step.body)) {
          client.pause();
          upstream.once('drain', () => pending || finished || client.resume());
        }
      }
      if (!step.done) return;
      chunk = step.rest;
    }
    if (chunk.length === 0) return;
    next = Buffer.concat([next, chunk]);
    const head = parseRequestHead(next, r.maxHeaderBytes);
    if (head.kind === 'incomplete') return;
    client.pause();
    client.off('data', onData);
    pending = { head, rest: next.subarray(head.kind === 'error' ? next.length : head.headBytes) };
    if (responded) handOver();
  };
  const handOver = () => finish(() => r.onNext(pending!.head, pending!.rest));
  // A half-close passes on to the destination (it may answer before it closes).
  const onClientEnd = () => {
    if (responded) finish(r.onEnd);
    else if (!pending) upstream.end();
  };
  const onResponseEnd = () => {
    if (responded) return;
    responded = true;
    upstream.destroy();
    r.onResponseEnd();
    if (finished) return;
    if (pending) return handOver();
    // Nothing more has arrived (or the body is cut short): the client connection ends with the
    // destination's, as a close-delimited response requires. A head already begun is waited for.
    if (!body.done || next.length === 0 || client.readableEnded) finish(r.onEnd);
  };

  upstream.on('data', onUpstreamData);
  upstream.once('end', onResponseEnd);
  upstream.once('close', onResponseEnd);
  client.on('data', onData);
  client.once('end', onClientEnd);
  if (client.readableEnded) upstream.end();
  if (r.first.length > 0) onData(r.first);
  if (!pending && !finished) client.resume();
}
