import type { FastifyInstance } from 'fastify';
import type { AuditRecorder } from '../audit/recorder.js';
import { AppError } from '../errors.js';
import type { Metrics } from '../metrics/metrics.js';

/**
 * The HTTP seams of the audit log and the metrics: every 401 answer (the request's client
 * address, method and path, at most 1024 characters; never its headers), recorded before the
 * answer is sent, so a client that has its 401 finds it in the log; and every request refused
 * because the engine was unreachable.
 */
export function registerObservation(app: FastifyInstance, audit: AuditRecorder | null, metrics: Metrics): void {
  app.addHook('onSend', async (req, reply, payload) => {
    if (reply.statusCode === 401) {
      metrics.authFailed();
      audit?.authFailed({ clientAddress: req.ip, method: req.method, path: req.url.split('?', 1)[0]!.slice(0, 1024) });
    }
    return payload;
  });
  app.addHook('onError', async (_req, _reply, err) => {
    if (err instanceof AppError && err.code === 'ENGINE_UNAVAILABLE') metrics.engineUnavailable();
  });
}
