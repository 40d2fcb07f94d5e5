import type { FastifyInstance } from 'fastify';
import type { Readiness } from '../readiness.js';

export function healthRoutes(app: FastifyInstance, readiness: Readiness, openapi: () => unknown): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const report = await readiness.check();
    return reply.status(report.ready ? 200 : 503).send(report);
  });
  app.get('/openapi.json', async () => openapi());
}
