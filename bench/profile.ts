/** Self time by function from V8 .cpuprofile files (what `node --cpu-prof` writes at exit). */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export interface HotSpot {
  fn: string;
  where: string;
  selfPct: number;
}

/** Self time of the busiest functions, as a share of the samples in which the process was not idle. */
export function hotSpots(dir: string, top = 20): { total: number; busyPct: number; spots: HotSpot[]; files: string[] } {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const self = new Map<string, number>();
  let total = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { nodes: ProfileNode[] };
    for (const n of p.nodes) {
      const hits = n.hitCount ?? 0;
      total += hits;
      if (n.callFrame.functionName === '(idle)') continue;
      const url = n.callFrame.url.replace(/^file:\/\/.*?\/(node_modules|dist)\//, '$1/');
      const key = `${n.callFrame.functionName || '(anonymous)'}\t${url ? `${url}:${n.callFrame.lineNumber + 1}` : ''}`;
      self.set(key, (self.get(key) ?? 0) + hits);
    }
  }
  const busy = [...self.values()].reduce((a, b) => a + b, 0);
  const spots = [...self.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, hits]) => {
      const [fn, where] = k.split('\t');
      return { fn: fn!, where: where!, selfPct: (100 * hits) / Math.max(busy, 1) };
    });
  return { total, busyPct: (100 * busy) / Math.max(total, 1), spots, files: files.map((f) => join(dir, f)) };
}
