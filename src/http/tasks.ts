import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.js';
import type { WorkspaceIntake } from '../workspace/intake/intake.js';
import { publicTask } from '../tasks/model.js';
import type { TaskManager } from '../tasks/manager.js';
import { createTaskBody, listTasksQuery } from '../tasks/schemas.js';
import { listTenant } from '../auth/scope.js';
import { parse } from './errors.js';
import { ownerOf, visibleTask } from './scoped.js';
import { submitMultipartTask } from './workspace-intake.js';

const idParam = (params: unknown) => (params as { id: string }).id;

export function taskRoutes(app: FastifyInstance, manager: TaskManager, intake: WorkspaceIntake, config: Readonly<Config>): void {
  app.post('/v1/tasks', async (req, reply) => {
    // One-shot use: multipart/form-data with a `task` JSON part and a `workspace` archive part
    // (workspace intake, src/http/workspace-intake.ts); otherwise the JSON body.
    const task = req.isMultipart()
      ? await submitMultipartTask(req, reply, manager, intake, config)
      : await manager.submit(parse(createTaskBody, req.body, 'body'), ownerOf(req));
    const self = `/v1/tasks/${task.id}`;
    return reply.status(202).send({
      id: task.id,
      status: task.status,
      image: task.image,
      workspaceId: task.workspaceId,
      createdAt: task.createdAt,
      links: { self, stream: `${self}/stream`, logs: `${self}/logs` },
    });
  });

  app.get('/v1/tasks', async (req) => {
    const q = parse(listTasksQuery, req.query, 'query');
    const { tenant, ...rest } = q;
    const scope = listTenant(req.principal, tenant);
    const page = manager.list({ ...rest, ...(scope !== undefined ? { tenant: scope } : {}) });
    return { tasks: page.tasks.map(publicTask), nextCursor: page.nextCursor };
  });

  app.get('/v1/tasks/:id', async (req) => publicTask(visibleTask(req, manager, idParam(req.params))));

  app.post('/v1/tasks/:id/cancel', async (req, reply) => {
    const task = manager.cancel(visibleTask(req, manager, idParam(req.params)).id);
    return reply.status(202).send(publicTask(task));
  });
}
