import type { z } from 'zod';
import type {
  errorFrame,
  exitFrame,
  streamFrame,
  submitAccepted,
  taskList,
  taskStatus,
  taskView,
  workspaceList,
  workspaceViewSchema,
} from '../http/responses.js';
import type { createTaskBody } from '../tasks/schemas.js';

/** The types the server's own zod schemas describe (requests as accepted, responses as sent). */
export type TaskRequest = z.input<typeof createTaskBody>;
export type Task = z.infer<typeof taskView>;
export type TaskStatus = z.infer<typeof taskStatus>;
export type TaskPage = z.infer<typeof taskList>;
export type SubmittedTask = z.infer<typeof submitAccepted>;
export type Workspace = z.infer<typeof workspaceViewSchema>;
export type WorkspacePage = z.infer<typeof workspaceList>;
export type StreamFrame = z.infer<typeof streamFrame>;
export type ExitFrame = z.infer<typeof exitFrame>;
export type ErrorFrame = z.infer<typeof errorFrame>;
