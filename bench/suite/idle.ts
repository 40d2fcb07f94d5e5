/** What the server holds at rest, and with many idle WebSocket subscribers on a running task. */
import WebSocket from 'ws';
import { getTask, MiB, settledRss, sleep, submit, summarize } from '../lib.js';
import type { Context, SectionResult } from './context.js';

async function openMany(url: string, n: number): Promise<WebSocket[]> {
  const out: WebSocket[] = [];
  for (let i = 0; i < n; i += 50) {
    const batch = Array.from({ length: Math.min(50, n - i) }, () => new WebSocket(url, { perMessageDeflate: false }));
    await Promise.all(batch.map((ws) => new Promise<void>((resolve, reject) => (ws.once('open', () => resolve()), ws.once('error', reject)))));
    out.push(...batch);
  }
  return out;
}

export async function idleSection(ctx: Context): Promise<SectionResult> {
  const n = ctx.plan.subscribers;
  const out = { rest: [] as number[], subs: [] as number[], per: [] as number[] };
  for (let i = 0; i < ctx.plan.idleRounds; i++) {
    await sleep(500);
    const rest = await settledRss(ctx.server.pid);
    const task = await submit(ctx.server, 'sleep 600', 900);
    for (let t = 0; (await getTask(ctx.server, task.id)).status !== 'running'; t++) {
      if (t > 600) throw new Error(`task ${task.id} did not start`);
      await sleep(20);
    }
    const subs = await openMany(`${ctx.server.wsUrl}/v1/tasks/${task.id}/stream`, n);
    await sleep(1000);
    const withSubs = await settledRss(ctx.server.pid);
    for (const ws of subs) ws.close();
    await fetch(`${ctx.server.url}/v1/tasks/${task.id}/cancel`, { method: 'POST' });
    for (let t = 0; ['queued', 'running'].includes((await getTask(ctx.server, task.id)).status) && t < 500; t++) await sleep(20);
    out.rest.push(rest / MiB);
    out.subs.push(withSubs / MiB);
    out.per.push((withSubs - rest) / n / 1024);
  }
  return {
    figures: {
      'idle.server.rssAtRestMiB': summarize(out.rest, 'MiB'),
      'idle.server.rssWithSubscribersMiB': summarize(out.subs, 'MiB'),
      'idle.server.kibPerSubscriber': summarize(out.per, 'KiB'),
    },
    notes: [`idle: ${n} WebSocket subscribers on one running task (sleep 600) that writes nothing`],
  };
}
