/** Short tasks per second at fixed concurrency, and a burst, server against the bare API path. */
import { interleave, now, ratePerSecond, serverRun, summarize } from '../lib.js';
import type { Context, SectionResult } from './context.js';

export async function throughputSection(ctx: Context): Promise<SectionResult> {
  const { plan } = ctx;
  const figures: SectionResult['figures'] = {};
  for (const c of plan.concurrencies) {
    const tasks = plan.throughputTasks;
    const r = await interleave(
      plan.throughputRounds,
      () => ratePerSecond(tasks, c, () => serverRun(ctx.server, 'true')),
      () => ratePerSecond(tasks, c, () => ctx.raw.run('true')),
    );
    figures[`throughput.server.c${c}`] = summarize(r.a, 'tasks/s');
    figures[`throughput.api.c${c}`] = summarize(r.b, 'tasks/s');
  }
  // The burst: every task submitted at once; the server's queue runs queue.concurrency of them,
  // the raw path the same number at a time.
  const width = Math.max(...plan.concurrencies);
  const r = await interleave(
    plan.throughputRounds,
    async () => {
      const t0 = now();
      await Promise.all(Array.from({ length: plan.burst }, () => serverRun(ctx.server, 'true')));
      return plan.burst / ((now() - t0) / 1000);
    },
    () => ratePerSecond(plan.burst, width, () => ctx.raw.run('true')),
  );
  figures['throughput.server.burst'] = summarize(r.a, 'tasks/s');
  figures['throughput.api.burst'] = summarize(r.b, 'tasks/s');
  return { figures, notes: [`burst: ${plan.burst} tasks submitted at once (server queue.concurrency ${width}); raw API ${width} at a time`] };
}
