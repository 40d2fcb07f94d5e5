import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.js';
import { detectImage } from '../detection/detect.js';
import type { WorkspaceRecord } from '../store/sqlite.js';
import { createWorkspaceBody } from '../tasks/schemas.js';
import { checkInlineFiles, type Workspaces } from '../workspace/workspaces.js';
import { parse } from './errors.js';

export function workspaceView(w: WorkspaceRecord, config: Readonly<Config>) {
  const detection = detectImage(w.markers, config.images);
  return {
    id: w.id,
    files: w.files,
    bytes: w.bytes,
    image: { name: detection.name, markers: detection.markers },
    createdAt: w.createdAt,
  };
}

export function workspaceRoutes(app: FastifyInstance, workspaces: Workspaces, config: Readonly<Config>): void {
  app.post('/v1/workspaces', async (req, reply) => {
    const { files } = parse(createWorkspaceBody, req.body, 'body');
    const { rootEntries } = checkInlineFiles(files, config.workspaces);
    const markers = detectImage(rootEntries, config.images).markers;
    const w = workspaces.createFromFiles(files, markers);
    return reply.status(201).send(workspaceView(w, config));
  });

  app.get('/v1/workspaces/:id', async (req) => workspaceView(workspaces.get((req.params as { id: string }).id), config));
}
