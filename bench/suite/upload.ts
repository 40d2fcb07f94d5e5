/** A large tar.gz becoming a workspace: MB/s and the server's peak RSS, against `tar -xzf`. */
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { makeTar } from '../archive.js';
import { now, peakRssWatch, settledRss, summarize } from '../lib.js';
import { MiB, type Context, type SectionResult } from './context.js';

function post(url: string, path: string, bytes: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { 'content-type': 'application/gzip', 'content-length': bytes } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    createReadStream(path).pipe(req);
  });
}

export async function uploadSection(ctx: Context): Promise<SectionResult> {
  const archive = join(ctx.tmp, 'upload.tar.gz');
  ctx.say(`writing a ${(ctx.plan.uploadBytes / 1e6).toFixed(0)} MB tar.gz of random content`);
  await makeTar(archive, ctx.plan.uploadBytes, true);
  const size = statSync(archive).size;
  const out = { server: [] as number[], tar: [] as number[], rss: [] as number[] };
  try {
    const server = async () => {
      const idle = await settledRss(ctx.server.pid);
      const peak = peakRssWatch(ctx.server.pid);
      const t0 = now();
      const r = await post(`${ctx.server.url}/v1/workspaces`, archive, size);
      const ms = now() - t0;
      out.rss.push((peak() - idle) / MiB);
      if (r.status !== 201) throw new Error(`POST /v1/workspaces answered ${r.status}: ${r.body.slice(0, 300)}`);
      out.server.push(size / 1e6 / (ms / 1000));
      const { id } = JSON.parse(r.body) as { id: string };
      await fetch(`${ctx.server.url}/v1/workspaces/${id}`, { method: 'DELETE' });
    };
    const tar = async () => {
      const dir = join(ctx.tmp, 'untar');
      mkdirSync(dir);
      const t0 = now();
      execFileSync('tar', ['-xzf', archive, '-C', dir]);
      out.tar.push(size / 1e6 / ((now() - t0) / 1000));
      rmSync(dir, { recursive: true, force: true });
    };
    for (let i = 0; i < ctx.plan.uploadRounds; i++) {
      if (i % 2 === 0) await server(), await tar();
      else await tar(), await server();
    }
  } finally {
    rmSync(archive, { force: true });
  }
  return {
    figures: {
      'upload.server.MBps': summarize(out.server, 'MB/s'),
      'upload.tarXzf.MBps': summarize(out.tar, 'MB/s'),
      'upload.server.rssAboveIdleMiB': summarize(out.rss, 'MiB'),
    },
    notes: [`upload: a ${(size / 1e6).toFixed(1)} MB tar.gz of random files (8 MiB each) to POST /v1/workspaces; raw: tar -xzf of the same file on the same disk`],
  };
}
