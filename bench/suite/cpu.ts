/** CPU per task: the server process, and the engine (Podman API service and the children it reaped). */
import { interleave, procTreeCpuMs, serverRun, summarize } from '../lib.js';
import type { Context, SectionResult } from './context.js';

export async function cpuSection(ctx: Context): Promise<SectionResult> {
  const n = ctx.plan.cpuTasks;
  const engine = () => (ctx.enginePid === null ? null : procTreeCpuMs(ctx.enginePid));
  const measure = async (run: () => Promise<unknown>) => {
    const s0 = procTreeCpuMs(ctx.server.pid)!;
    const e0 = engine();
    for (let i = 0; i < n; i++) await run();
    const s1 = procTreeCpuMs(ctx.server.pid)!;
    const e1 = engine();
    return { server: (s1 - s0) / n, engine: e0 === null || e1 === null ? Number.NaN : (e1 - e0) / n };
  };
  const r = await interleave(
    ctx.plan.cpuRounds,
    () => measure(() => serverRun(ctx.server, 'echo hi')),
    () => measure(() => ctx.raw.run('echo hi')),
  );
  return {
    figures: {
      'cpu.server.msPerTask': summarize(r.a.map((x) => x.server), 'ms'),
      'cpu.engine.serverPath.msPerTask': summarize(r.a.map((x) => x.engine), 'ms'),
      'cpu.engine.apiPath.msPerTask': summarize(r.b.map((x) => x.engine), 'ms'),
    },
    notes: [
      `cpu: utime+stime of the server process and the helpers it reaped (mkfs.ext4, mount) over ${n} echo tasks, per task; engine: the Podman API service (pid ${ctx.enginePid ?? 'not found'}) with the children it reaped — conmon and runc, which it does not reap, are not counted, so the engine figure is a lower bound`,
    ],
  };
}
