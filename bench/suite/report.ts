/** Ratios against the raw engine, the targets, the printed table and the JSON of one run. */
import { table, type Figure } from '../lib.js';

export interface Ratio {
  /** Figure key of the server side and of the raw side; the ratio is of their medians. */
  server: string;
  raw: string;
  value: number;
}

export interface Target {
  id: string;
  description: string;
  value: number | null;
  threshold: number | null;
  met: boolean | null;
  note?: string;
}

/** Which figure is compared with which (server / raw, both medians). */
export const COMPARISONS: readonly [string, string][] = [
  ['echo.server.firstByteMs', 'echo.api.firstByteMs'],
  ['echo.server.firstByteMs', 'echo.cli.firstByteMs'],
  ['echo.server.exitMs', 'echo.api.exitMs'],
  ['echo.server.exitMs', 'echo.cli.exitMs'],
  ['echo.serverWarm.firstByteMs', 'echo.api.firstByteMs'],
  ['echo.serverWarm.exitMs', 'echo.api.exitMs'],
  ...['c1', 'c2', 'c4', 'c8', 'burst'].map((c): [string, string] => [`throughput.server.${c}`, `throughput.api.${c}`]),
  ['streaming.server.MiBps', 'streaming.api.logNone.MiBps'],
  ['streaming.server.MiBps', 'streaming.api.logK8sFile.MiBps'],
  ['upload.server.MBps', 'upload.tarXzf.MBps'],
  ['cpu.engine.serverPath.msPerTask', 'cpu.engine.apiPath.msPerTask'],
  // gVisor against runc, both through the server.
  ['isolation.gvisor.echo.firstByteMs', 'isolation.runc.echo.firstByteMs'],
  ['isolation.gvisor.echo.exitMs', 'isolation.runc.echo.exitMs'],
  ['isolation.gvisor.streaming.MiBps', 'isolation.runc.streaming.MiBps'],
];

const RSS_LIMIT_MIB = 50e6 / (1024 * 1024); // 50 MB

export function ratios(figures: Record<string, Figure>): Ratio[] {
  return COMPARISONS.filter(([s, r]) => figures[s] && figures[r]).map(([s, r]) => ({ server: s, raw: r, value: figures[s]!.median / figures[r]!.median }));
}

export function targets(figures: Record<string, Figure>): Target[] {
  const m = (k: string) => figures[k]?.median ?? Number.NaN;
  // A memory bound holds in every round: the highest round is the figure.
  const worst = (k: string) => figures[k]?.max ?? Number.NaN;
  const check = (id: string, description: string, value: number, threshold: number, ok: (v: number) => boolean, note?: string): Target => ({
    id,
    description,
    value: Number.isFinite(value) ? value : null,
    threshold,
    met: Number.isFinite(value) ? ok(value) : null,
    ...(note ? { note } : {}),
  });
  const cold = m('echo.server.exitMs') / m('echo.api.exitMs');
  return [
    check('cold.vsApi', 'cold path: echo hi submit → exit p50 ≤ 1.1× the bare API path', cold, 1.1, (v) => v <= 1.1),
    check('cold.vsCli', 'cold path: echo hi submit → exit p50 below `podman run` (ratio < 1)', m('echo.server.exitMs') / m('echo.cli.exitMs'), 1, (v) => v < 1),
    check('warm.exitMs', 'warm path: echo hi submit → exit p50 ≤ 25 ms', m('echo.serverWarm.exitMs'), 25, (v) => v <= 25),
    check('throughput.c4', 'throughput at concurrency 4 ≥ 0.9× the raw API', m('throughput.server.c4') / m('throughput.api.c4'), 0.9, (v) => v >= 0.9),
    // The server's containers log to k8s-file (it reads their output from that log): the same log
    // configuration is raw attach with k8s-file; the table also shows log driver none.
    check('streaming.vsAttach', 'streaming ≥ 0.8× raw attach with the same log configuration (k8s-file)', m('streaming.server.MiBps') / m('streaming.api.logK8sFile.MiBps'), 0.8, (v) => v >= 0.8),
    check('streaming.rss', 'streaming: server peak RSS ≤ 50 MB above idle, highest round (MiB)', worst('streaming.server.rssAboveIdleMiB'), RSS_LIMIT_MIB, (v) => v <= RSS_LIMIT_MIB),
    check('upload.rss', 'upload: server peak RSS ≤ 50 MB above idle, highest round (MiB)', worst('upload.server.rssAboveIdleMiB'), RSS_LIMIT_MIB, (v) => v <= RSS_LIMIT_MIB),
  ];
}

const num = (x: number) => (!Number.isFinite(x) ? 'n/a' : Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2));

/** The printed report: figures with their ratio against the raw side, limits, targets. */
export function render(figures: Record<string, Figure>, rs: Ratio[], ts: Target[], limits: Record<string, unknown>, header: string[], notes: string[]): string {
  const rows = Object.entries(figures).map(([k, f]) => {
    const r = rs.filter((x) => x.server === k).map((x) => `${x.value.toFixed(2)}x ${x.raw.split('.').slice(1, -1).join('.') || x.raw}`);
    return [k, f.unit, num(f.median), num(f.min), num(f.max), String(f.n), r.join(', ')];
  });
  const verdict = (t: Target) => (t.met === null ? t.note ?? 'not measured' : t.met ? 'met' : 'NOT MET');
  return [
    ...header,
    '',
    table(['figure', 'unit', 'median', 'min', 'max', 'n', 'server / raw (medians)'], rows),
    '',
    'Server limits set by the bench',
    table(['setting', 'value'], Object.entries(limits).map(([k, v]) => [k, String(v)])),
    '',
    'Targets',
    table(['target', 'value', 'threshold', 'verdict'], ts.map((t) => [t.description, t.value === null ? '-' : num(t.value), t.threshold === null ? '-' : num(t.threshold), verdict(t)])),
    '',
    ...notes.map((n) => `- ${n}`),
    '',
  ].join('\n');
}
