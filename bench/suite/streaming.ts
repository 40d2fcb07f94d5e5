/** A task writing a lot to stdout: received by a WebSocket client, against raw attach. */
import { peakRssWatch, serverRun, settledRss, summarize } from '../lib.js';
import { MiB, type Context, type SectionResult } from './context.js';

const LINE = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-'; // + '\n' = 64 bytes

export async function streamingSection(ctx: Context): Promise<SectionResult> {
  const bytes = ctx.plan.streamBytes;
  const command = `yes ${LINE} | head -c ${bytes}`;
  const rate = (ms: number) => bytes / MiB / (ms / 1000);
  const out = { server: [] as number[], none: [] as number[], k8s: [] as number[], rss: [] as number[] };
  const paths: (() => Promise<void>)[] = [
    async () => {
      const idle = await settledRss(ctx.server.pid);
      const peak = peakRssWatch(ctx.server.pid);
      const r = await serverRun(ctx.server, command);
      out.rss.push((peak() - idle) / MiB);
      out.server.push(rate(r.exitMs));
    },
    async () => void out.none.push(rate((await ctx.raw.run(command, 'none')).exitMs)),
    async () => void out.k8s.push(rate((await ctx.raw.run(command, 'k8s-file')).exitMs)),
  ];
  for (let i = 0; i < ctx.plan.streamRounds; i++) {
    for (let j = 0; j < paths.length; j++) await paths[(i + j) % paths.length]!();
  }
  return {
    figures: {
      'streaming.server.MiBps': summarize(out.server, 'MiB/s'),
      'streaming.api.logNone.MiBps': summarize(out.none, 'MiB/s'),
      'streaming.api.logK8sFile.MiBps': summarize(out.k8s, 'MiB/s'),
      'streaming.server.rssAboveIdleMiB': summarize(out.rss, 'MiB'),
    },
    notes: [`streaming: ${bytes / MiB} MiB of stdout, submit → exit; the server keeps head + tail and sends them live, raw attach reads every byte`],
  };
}
