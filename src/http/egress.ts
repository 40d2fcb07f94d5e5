import type { FastifyInstance } from 'fastify';
import type { TaskManager } from '../tasks/manager.js';

/** GET /v1/tasks/:id/egress → {"decisions": [...], "dropped"}. */
export function egressRoutes(app: FastifyInstance, manager: TaskManager): void {
  app.get('/v1/tasks/:id/egress', async (req) => manager.egressDecisions((req.params as { id: string }).id));
}
