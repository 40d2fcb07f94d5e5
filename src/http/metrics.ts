import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics/metrics.js';
import { requireAdmin } from './authenticate.js';

/** GET /metrics: Prometheus text. Needs an admin key on a server with keys. */
export function metricsRoutes(app: FastifyInstance, metrics: Metrics): void {
  app.get('/metrics', { preHandler: requireAdmin }, async (_req, reply) => {
    const text = await metrics.text();
    return reply.type(metrics.contentType()).send(text);
  });
}
