/**
 * `echo hi`: submit → first byte and submit → exit, through REST + WebSocket on the cold path
 * (a shape no pool holds) and the warm path (the default shape, handed to a pre-started
 * sandbox), against the bare API path and the CLI.
 */
import { serverRun, summarize } from '../lib.js';
import { cliRun } from '../raw-engine.js';
import { COLD_TASK, type Context, type SectionResult } from './context.js';

/** Time the pool gets to refill the member the previous warm round took. */
const REFILL_MS = 600;

export async function echoSection(ctx: Context): Promise<SectionResult> {
  const paths = {
    server: () => serverRun(ctx.server, 'echo hi', 120, COLD_TASK),
    serverWarm: async () => {
      await new Promise((r) => setTimeout(r, REFILL_MS));
      return serverRun(ctx.server, 'echo hi');
    },
    api: () => ctx.raw.run('echo hi'),
    cli: () => cliRun(ctx.root, ctx.image, 'echo hi'),
  };
  const names = Object.keys(paths) as (keyof typeof paths)[];
  for (const n of names) await paths[n](); // warm-up, not counted
  const first: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const exit: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < ctx.plan.echoRounds; i++) {
    // Rotate the order so that no path always runs right after another.
    for (let j = 0; j < names.length; j++) {
      const n = names[(i + j) % names.length]!;
      const r = await paths[n]();
      first[n]!.push(r.firstByteMs ?? Number.NaN);
      exit[n]!.push(r.exitMs);
    }
  }
  const figures: SectionResult['figures'] = {};
  for (const n of names) {
    figures[`echo.${n}.firstByteMs`] = summarize(first[n]!, 'ms');
    figures[`echo.${n}.exitMs`] = summarize(exit[n]!, 'ms');
  }
  return {
    figures,
    notes: [`echo.server is the cold path (${JSON.stringify(COLD_TASK)}, a shape no pool holds); echo.serverWarm the default shape from the pool, each round after a ${REFILL_MS} ms pause for the refill`],
  };
}
