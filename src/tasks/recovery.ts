import type { OwnContainer } from '../runtime/engine.js';

/** What start-up found: the containers of tasks it adopts, and those no task owns. */
export interface RecoveryPlan {
  adopt: Map<string, OwnContainer>;
  orphans: OwnContainer[];
}

/**
 * Which of our containers belong to a task recorded `running` (one each, adopted), and which
 * belong to no such task (orphans, to be removed).
 */
export function planRecovery(running: readonly { id: string }[], containers: OwnContainer[]): RecoveryPlan {
  const ids = new Set(running.map((t) => t.id));
  const adopt = new Map<string, OwnContainer>();
  const orphans: OwnContainer[] = [];
  for (const c of containers) {
    if (ids.has(c.taskId) && !adopt.has(c.taskId)) adopt.set(c.taskId, c);
    else orphans.push(c);
  }
  return { adopt, orphans };
}
