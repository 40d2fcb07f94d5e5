import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TaskManager } from '../tasks/manager.js';
import { logsQuery } from '../tasks/schemas.js';
import { LogCursor } from '../streaming/cursor.js';
import { readFrames } from '../streaming/follow.js';
import { streamFile } from '../streaming/tasklog.js';
import { parse } from './errors.js';
import type { StreamLimiter } from './limiter.js';
import { visibleTask } from './scoped.js';

function abortOnClose(req: FastifyRequest): AbortSignal {
  const ac = new AbortController();
  req.raw.socket.once('close', () => ac.abort());
  return ac.signal;
}

type Format = 'text' | 'ndjson' | 'sse';

function formatFor(accept: string | undefined): Format {
  const a = accept ?? '';
  if (a.includes('text/event-stream')) return 'sse';
  if (a.includes('application/x-ndjson')) return 'ndjson';
  return 'text';
}

async function* render(frames: AsyncGenerator<string[]>, format: Format): AsyncGenerator<string> {
  for await (const lines of frames) {
    let out = '';
    for (const line of lines) {
      if (format === 'ndjson') out += `${line}\n`;
      else if (format === 'sse') {
        const { type, seq } = JSON.parse(line) as { type: string; seq: number };
        out += `event: ${type}\nid: ${seq}\ndata: ${line}\n\n`;
      } else {
        const f = JSON.parse(line) as { type: string; data?: string };
        if ((f.type === 'stdout' || f.type === 'stderr') && f.data) out += f.data;
      }
    }
    if (out) yield out;
  }
}

const CONTENT_TYPES: Record<Format, string> = {
  text: 'text/plain; charset=utf-8',
  ndjson: 'application/x-ndjson',
  sse: 'text/event-stream',
};

export function logRoutes(app: FastifyInstance, manager: TaskManager, limiter: StreamLimiter): void {
  app.get('/v1/tasks/:id/logs', async (req, reply) => {
    const { id } = req.params as { id: string };
    const q = parse(logsQuery, req.query, 'query');
    const log = manager.taskLog(visibleTask(req, manager, id).id);
    if (q.stream) {
      // Exact bytes as kept (head, then tail), not decoded text.
      const file = join(log.dir, streamFile(q.stream));
      reply.type('application/octet-stream');
      return reply.send(existsSync(file) ? createReadStream(file) : Buffer.alloc(0));
    }
    const format = formatFor(req.headers.accept);
    const lastEventId = Number.parseInt(String(req.headers['last-event-id'] ?? ''), 10);
    const after = format === 'sse' && Number.isSafeInteger(lastEventId) && lastEventId > 0 ? lastEventId : q.after;
    const follow = q.follow === 'true';
    if (follow) limiter.acquire(req);
    const frames = readFrames(log, new LogCursor(log, after), follow, abortOnClose(req));
    reply.type(CONTENT_TYPES[format]);
    if (format === 'sse') reply.header('cache-control', 'no-cache');
    return reply.send(Readable.from(render(frames, format)));
  });
}
