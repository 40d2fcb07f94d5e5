import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { AppError } from '../errors.js';
import type { TaskManager } from '../tasks/manager.js';
import { afterQuery, stdinFrame } from '../tasks/schemas.js';
import { LogCursor } from '../streaming/cursor.js';
import { readFrames } from '../streaming/follow.js';
import { parse, toAppError } from './errors.js';
import type { StreamLimiter } from './limiter.js';
import { visibleTask } from './scoped.js';

/** Stop pulling frames from disk while this much is queued in the socket. */
const HIGH_WATER = 256 * 1024;
export const CLOSE_BACKLOG = 4008;
/** A subscriber whose socket drained nothing for this long counts as stalled. */
const STALL_MS = 2000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * GET /v1/tasks/:id/stream. Every subscriber reads the task's log from disk with its own cursor:
 * a slow one falls behind without holding anyone back (costing a file position, not memory), and
 * a stalled one (nothing drained for STALL_MS) whose unsent backlog passes the configured bound is
 * closed with 4008 so that it can reconnect with ?after=.
 */
export function streamRoutes(app: FastifyInstance, manager: TaskManager, limiter: StreamLimiter, backlogLimit: number): void {
  app.get(
    '/v1/tasks/:id/stream',
    {
      websocket: true,
      // Runs before the upgrade: unknown tasks and bad queries get a JSON error, not a socket.
      preValidation: async (req) => {
        parse(afterQuery, req.query, 'query');
        visibleTask(req, manager, (req.params as { id: string }).id);
        limiter.acquire(req);
      },
    },
    (socket: WebSocket, req) => {
      const { id } = req.params as { id: string };
      const { after } = parse(afterQuery, req.query, 'query');
      const log = manager.taskLog(id);
      const cursor = new LogCursor(log, after);
      const ac = new AbortController();
      socket.on('close', () => ac.abort());
      socket.on('error', () => ac.abort());

      socket.on('message', (raw, isBinary) => {
        try {
          if (isBinary) throw new AppError('VALIDATION_FAILED', { in: 'message', issues: [{ path: '', message: 'send JSON text frames' }] });
          let json: unknown;
          try {
            json = JSON.parse(raw.toString());
          } catch {
            throw new AppError('MALFORMED_JSON', { in: 'message' });
          }
          const msg = parse(stdinFrame, json, 'message');
          if (msg.type === 'cancel') manager.cancel(id);
          else if ('eof' in msg) manager.writeStdin(id, null);
          else manager.writeStdin(id, Buffer.from(msg.data));
        } catch (err) {
          // Out-of-band error frames carry no seq: they are not part of the task's log.
          const e = toAppError(err as Error);
          if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ type: 'error', ...e.toJSON().error }));
        }
      });

      void (async () => {
        for await (const lines of readFrames(log, cursor, true, ac.signal)) {
          for (const line of lines) socket.send(line);
          // Backpressure: read no further from disk while the socket has this much queued.
          let buffered = socket.bufferedAmount;
          let progressAt = Date.now();
          while (socket.bufferedAmount > HIGH_WATER && !ac.signal.aborted) {
            if (socket.bufferedAmount < buffered) progressAt = Date.now();
            buffered = socket.bufferedAmount;
            const stalled = Date.now() - progressAt >= STALL_MS;
            if (stalled && cursor.backlog + buffered > backlogLimit) {
              socket.close(CLOSE_BACKLOG, 'backlog too large; reconnect with ?after=');
              setTimeout(() => socket.terminate(), 10_000).unref();
              return;
            }
            await sleep(20);
          }
        }
        // The log ends with the task's exit frame, or early when the server shuts down (1001: the
        // client reconnects with ?after= once it is back).
        if (!ac.signal.aborted && socket.readyState === socket.OPEN) {
          if (log.released) socket.close(1001, 'server shutting down; reconnect with ?after=');
          else socket.close(1000, 'task finished');
        }
      })().catch((err: unknown) => {
        req.log.error({ err }, 'stream failed');
        socket.close(1011);
      });
    },
  );
}
