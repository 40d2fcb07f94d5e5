import type { Services } from '../../src/services.js';

/**
 * Which path a test file's tasks take. Cold by default; the `*.warm.test.ts` files set
 * SANDBOXSHIFT_TEST_PATH=warm and import the cold file, whose servers then have a warm pool, and
 * every task of the default shape is handed to a pre-started sandbox: before each such submission
 * the helper waits until the pool is full, and counts it, so that the file can check at its end
 * that none of them started cold (`expectAllWarm`).
 */
export const isWarm = () => process.env.SANDBOXSHIFT_TEST_PATH === 'warm';

/** Pool size of a warm test server (enough for the few tasks a test submits at once). */
export const WARM_POOL_SIZE = 4;

interface WarmServer {
  services: Services;
  /** Submissions of the default shape, each expected to be handed to a pre-started sandbox. */
  expected: number;
  /** Closed: its counts stay for expectAllWarm, its engine is not asked any more. */
  closed?: boolean;
}

export const warmServers = new Map<string, WarmServer>();

/**
 * Warm server processes (startServerProcess) by URL: the helper waits before each submission of
 * the default shape until their /metrics show a member ready (their handoffs are checked by the
 * test itself).
 */
export const warmProcesses = new Set<string>();

async function poolReady(base: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await fetch(`${base}/metrics`).then((r) => r.text(), () => '');
    const ready = Number(/^sandboxshift_pool_ready (\S+)$/m.exec(text)?.[1] ?? 0);
    if (ready > 0) return;
    if (Date.now() > deadline) throw new Error(`no pre-started sandbox of ${base} was ready within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A body the pool's default shape takes: no limits or image of its own. */
function defaultShape(body: Record<string, unknown>): boolean {
  return body.resources === undefined && body.image === undefined;
}

/** Called by the client helper before each submission. */
export async function beforeSubmit(base: string, body: Record<string, unknown>): Promise<void> {
  if (warmProcesses.has(base) && defaultShape(body)) await poolReady(base, 60_000);
  const w = warmServers.get(base);
  if (!w || !defaultShape(body)) return;
  await w.services.pool.ready(60_000);
  w.expected += 1;
}

/** The last test of a warm file: every default-shape task of its servers ran warm. */
export function expectAllWarm(t: Tap.Test): void {
  t.test('every task of the default shape ran in a pre-started sandbox', async (t) => {
    const used = [...warmServers.values()].filter((w) => w.expected > 0);
    t.ok(used.length > 0, 'tasks of the default shape were submitted to a warm server');
    for (const w of used) {
      // A task cancelled while queued never starts: fewer handoffs than submissions then.
      t.ok(w.services.engine.handoffs > 0, `${w.services.engine.handoffs} tasks handed over (${w.expected} submitted through the helper)`);
      t.equal(w.services.engine.missed, 0, 'no task of the default shape started cold');
    }
  });
}
