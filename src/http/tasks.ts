import type { FastifyInstance } from 'fastify';
import { publicTask } from '../tasks/model.js';
import type { TaskManager } from '../tasks/manager.js';
import { createTaskBody, listTasksQuery } from '../tasks/schemas.js';
import { parse } from './errors.js';

const idParam = (params: unknown) => (params as { id: string }).id;

export function taskRoutes(app: FastifyInstance, manager: TaskManager): void {
  app.post('/v1/tasks', async (req, reply) => {
    const body = parse(createTaskBody, req.body, 'body');
    const task = await manager.submit(body);
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
    const page = manager.list(q);
    return { tasks: page.tasks.map(publicTask), nextCursor: page.nextCursor };
  });

  app.get('/v1/tasks/:id', async (req) => publicTask(manager.get(idParam(req.params))));

  app.post('/v1/tasks/:id/cancel', async (req, reply) => {
    const task = manager.cancel(idParam(req.params));
    return reply.status(202).send(publicTask(task));
  });
}
