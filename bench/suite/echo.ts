/** `echo hi`: submit → first byte and submit → exit, server against the bare API path and the CLI. */
import { serverRun, summarize } from '../lib.js';
import { cliRun } from '../raw-engine.js';
import type { Context, SectionResult } from './context.js';

export async function echoSection(ctx: Context): Promise<SectionResult> {
  const paths = {
    server: () => serverRun(ctx.server, 'echo hi'),
    api: () => ctx.raw.run('echo hi'),
    cli: () => cliRun(ctx.root, ctx.image, 'echo hi'),
  };
  const names = Object.keys(paths) as (keyof typeof paths)[];
  for (const n of names) await paths[n](); // warm-up, not counted
  const first: Record<string, number[]> = { server: [], api: [], cli: [] };
  const exit: Record<string, number[]> = { server: [], api: [], cli: [] };
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
  return { figures };
}
