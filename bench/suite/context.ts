/** What every section of the benchmark suite gets, and what it gives back. */
import type { Figure, ServerChild } from '../lib.js';
import type { RawApi } from '../raw-engine.js';

/** Rounds and sizes of one run (--quick and --smoke shrink them). */
export interface Plan {
  mode: 'full' | 'quick' | 'smoke';
  echoRounds: number;
  throughputRounds: number;
  /** Tasks per round and side at each concurrency. */
  throughputTasks: number;
  concurrencies: number[];
  burst: number;
  streamRounds: number;
  streamBytes: number;
  uploadRounds: number;
  uploadBytes: number;
  idleRounds: number;
  subscribers: number;
  cpuRounds: number;
  cpuTasks: number;
}

export const MiB = 1024 * 1024;

export const PLANS: Record<Plan['mode'], Plan> = {
  full: { mode: 'full', echoRounds: 20, throughputRounds: 3, throughputTasks: 16, concurrencies: [1, 2, 4, 8], burst: 50, streamRounds: 3, streamBytes: 256 * MiB, uploadRounds: 3, uploadBytes: 200e6, idleRounds: 3, subscribers: 1000, cpuRounds: 3, cpuTasks: 20 },
  quick: { mode: 'quick', echoRounds: 5, throughputRounds: 1, throughputTasks: 8, concurrencies: [1, 2, 4, 8], burst: 50, streamRounds: 1, streamBytes: 256 * MiB, uploadRounds: 1, uploadBytes: 200e6, idleRounds: 1, subscribers: 1000, cpuRounds: 1, cpuTasks: 8 },
  smoke: { mode: 'smoke', echoRounds: 2, throughputRounds: 1, throughputTasks: 2, concurrencies: [1, 2, 4, 8], burst: 4, streamRounds: 1, streamBytes: 8 * MiB, uploadRounds: 1, uploadBytes: 10e6, idleRounds: 1, subscribers: 50, cpuRounds: 1, cpuTasks: 3 },
};

/** The server limits the bench sets, shown in the table and the JSON. */
export function serverLimits(plan: Plan) {
  return {
    'queue.concurrency': Math.max(...plan.concurrencies),
    'queue.maxQueued': 1000,
    'requests.maxStreams': plan.subscribers + 64,
    'workspaces.archive.maxCompressedBytes': Math.ceil(plan.uploadBytes * 1.05) + 16 * MiB,
    'workspaces.archive.maxExpandedBytes': Math.ceil(plan.uploadBytes) + 64 * MiB,
    'output.headBytes (default)': 8 * MiB,
    'output.tailBytes (default)': 8 * MiB,
    'task limits (defaults)': 'cpus 1, memoryMb 512, pids 256',
    'pool.size (default shape)': POOL_SIZE,
    'cold tasks (echo.server)': `resources.pids ${COLD_PIDS}: a shape no pool holds`,
  };
}

/** Pre-started sandboxes of the default shape in the benchmarked server. */
export const POOL_SIZE = 4;
/** A task with this pids limit matches no pool shape: it always starts cold. */
export const COLD_PIDS = 255;
/** The body fields of a task that starts cold. */
export const COLD_TASK = { resources: { pids: COLD_PIDS } };

export interface Context {
  root: string;
  tmp: string;
  plan: Plan;
  server: ServerChild;
  raw: RawApi;
  image: string;
  /** The Podman API service's PID, when it could be found. */
  enginePid: number | null;
  say(line: string): void;
}

export interface SectionResult {
  figures: Record<string, Figure>;
  notes?: string[];
}
