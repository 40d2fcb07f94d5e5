import type { FastifyInstance } from 'fastify';
import type { TaskManager } from '../tasks/manager.js';
import { visibleTask } from './scoped.js';

/** GET /v1/tasks/:id/egress → {"decisions": [...], "dropped"}. */
export function egressRoutes(app: FastifyInstance, manager: TaskManager): void {
  app.get('/v1/tasks/:id/egress', async (req) => manager.egressDecisions(visibleTask(req, manager, (req.params as { id: string }).id).id));
}
