import type { StreamName } from '../runtime/engine.js';

export type TaskStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'timed_out' | 'cancelled' | 'error';

/** Frames as the API serves them (openapi.yaml); `seq` is added on append. */
export type FrameBody =
  | { type: 'status'; status: TaskStatus }
  | { type: StreamName; data: string }
  | { type: 'gap'; stream: StreamName; droppedBytes: number }
  | { type: 'exit'; status: TaskStatus; exitCode: number | null; reason: string | null; durationMs: number | null };

export type Frame = FrameBody & { seq: number };
