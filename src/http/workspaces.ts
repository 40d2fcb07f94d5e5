import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/schema.js';
import { detectImage } from '../detection/detect.js';
import type { WorkspaceRecord } from '../store/sqlite.js';
import type { Workspaces } from '../workspace/workspaces.js';

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
  // POST /v1/workspaces (every intake kind) lives in ./workspace-intake.ts.
  app.get('/v1/workspaces/:id', async (req) => workspaceView(workspaces.get((req.params as { id: string }).id), config));
}
