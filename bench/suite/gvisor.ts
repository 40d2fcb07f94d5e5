/**
 * gVisor beside runc, both through the server: `echo hi` submit → first byte and → exit (the
 * cold path), and a large stdout stream submit → exit, in interleaved rounds.
 */
import { serverRun, summarize } from '../lib.js';
import { MiB, type Context, type SectionResult } from './context.js';

const LINE = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-'; // + '\n' = 64 bytes
const ISOLATIONS = ['runc', 'gvisor'] as const;

export async function gvisorSection(ctx: Context): Promise<SectionResult> {
  const bytes = ctx.plan.streamBytes;
  const stream = `yes ${LINE} | head -c ${bytes}`;
  const first: Record<string, number[]> = { runc: [], gvisor: [] };
  const exit: Record<string, number[]> = { runc: [], gvisor: [] };
  const rate: Record<string, number[]> = { runc: [], gvisor: [] };
  for (const isolation of ISOLATIONS) await serverRun(ctx.server, 'echo hi', 120, { isolation }); // warm-up, not counted
  for (let i = 0; i < ctx.plan.echoRounds; i++) {
    for (let j = 0; j < ISOLATIONS.length; j++) {
      const isolation = ISOLATIONS[(i + j) % ISOLATIONS.length]!;
      const r = await serverRun(ctx.server, 'echo hi', 120, { isolation });
      first[isolation]!.push(r.firstByteMs ?? Number.NaN);
      exit[isolation]!.push(r.exitMs);
    }
  }
  for (let i = 0; i < ctx.plan.streamRounds; i++) {
    for (let j = 0; j < ISOLATIONS.length; j++) {
      const isolation = ISOLATIONS[(i + j) % ISOLATIONS.length]!;
      const r = await serverRun(ctx.server, stream, 300, { isolation });
      rate[isolation]!.push(bytes / MiB / (r.exitMs / 1000));
    }
  }
  const figures: SectionResult['figures'] = {};
  for (const n of ISOLATIONS) {
    figures[`isolation.${n}.echo.firstByteMs`] = summarize(first[n]!, 'ms');
    figures[`isolation.${n}.echo.exitMs`] = summarize(exit[n]!, 'ms');
    figures[`isolation.${n}.streaming.MiBps`] = summarize(rate[n]!, 'MiB/s');
  }
  return {
    figures,
    notes: [`isolation: the server with runc and with gVisor (runsc, created through its own Podman API service), echo hi and ${bytes / MiB} MiB of stdout, interleaved`],
  };
}
