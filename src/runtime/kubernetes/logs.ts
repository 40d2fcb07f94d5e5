import { Writable } from 'node:stream';
import type { Log } from '@kubernetes/client-node';

/** How long one pods/log read (not following) may take. */
const LOG_READ_MS = 15_000;

/**
 * The container's merged log (stdout and stderr interleaved as pods/log serves them) for lines
 * stamped after `sinceMs` and before `untilMs`, each line with its newline.
 */
export async function readLogBetween(api: Log, namespace: string, pod: string, container: string, sinceMs: number, untilMs: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  const finished = new Promise<void>((resolve, reject) => {
    sink.on('finish', resolve);
    sink.on('error', reject);
  });
  const sinceTime = sinceMs > 0 ? new Date(Math.floor(sinceMs / 1000) * 1000).toISOString().replace(/\.\d+Z$/, 'Z') : undefined;
  const abort = await api.log(namespace, pod, container, sink, { follow: false, timestamps: true, ...(sinceTime ? { sinceTime } : {}) });
  const timer = setTimeout(() => abort.abort(), LOG_READ_MS);
  try {
    await finished;
  } finally {
    clearTimeout(timer);
  }
  return linesBetween(Buffer.concat(chunks), sinceMs, untilMs);
}

/** Keeps the timestamped lines of `raw` stamped in (sinceMs, untilMs), without their stamps. */
export function linesBetween(raw: Buffer, sinceMs: number, untilMs: number): Buffer {
  const out: Buffer[] = [];
  let start = 0;
  while (start < raw.length) {
    let end = raw.indexOf(0x0a, start);
    const last = end < 0;
    if (last) end = raw.length;
    const line = raw.subarray(start, end);
    start = end + 1;
    const space = line.indexOf(0x20);
    if (space <= 0) continue;
    const at = Date.parse(line.subarray(0, space).toString('latin1'));
    if (Number.isNaN(at) || at <= sinceMs || at >= untilMs) continue;
    out.push(line.subarray(space + 1));
    if (!last) out.push(Buffer.from('\n'));
  }
  return Buffer.concat(out);
}
