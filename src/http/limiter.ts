import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';

/**
 * Bounds the live streams (WebSockets, followed logs) open at once: each holds a file descriptor
 * and a read buffer, so their number must not be up to the clients.
 */
export class StreamLimiter {
  private open = 0;

  constructor(
    private readonly max: number,
    private readonly retryAfterSeconds: number,
  ) {}

  /** Streams open now. */
  get openCount(): number {
    return this.open;
  }

  /** Takes a slot for this request until its connection closes, or throws TOO_MANY_STREAMS. */
  acquire(req: FastifyRequest): void {
    if (this.open >= this.max) {
      throw new AppError('TOO_MANY_STREAMS', { open: this.open, limit: this.max }, undefined, {
        'retry-after': String(this.retryAfterSeconds),
      });
    }
    this.open++;
    // The TCP socket closes in every case: after the WebSocket ends, or when an upgrade fails.
    req.raw.socket.once('close', () => this.open--);
  }
}
