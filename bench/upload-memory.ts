/**
 * Upload-memory benchmark: does the server's memory stay flat while it takes a large archive
 * (default 200 MiB) as a workspace? And what does intake cost against plain `tar -xf` / `unzip`?
 *
 *   npm run build && npm run bench -- upload-memory [--mib 200] [--formats tar,tgz,zip] [--socket PATH|owned] [--keep]
 *
 * Writes each archive to a temporary directory (random, incompressible file contents, 8 MiB per
 * file), starts the real server as a child process (temporary data directory, 127.0.0.1, a free
 * port, archive limits raised to fit), streams each archive to POST /v1/workspaces from disk,
 * samples the server's VmRSS every 50 ms during the upload, then extracts the same archive with
 * the system tool for comparison. A benchmark, not a test: it prints figures and exits 0 unless
 * something needed for the figures failed.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { makeTar as makeTarBytes, write } from './archive.js';
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { fmtMiB, fmtMs, fmtRatio, median, MiB, now, parseFlags, procMemory, repoRoot, sleep, startServer, table, usage, UsageError, type FlagSpec, type ServerChild } from './lib.js';

const FLAGS: readonly FlagSpec[] = [
  { name: 'mib', kind: 'int', min: 8, max: 4096, help: 'archive content size in MiB (default 200)' },
  { name: 'formats', kind: 'string', help: 'comma-separated subset of tar,tgz,zip (default all three)' },
  { name: 'socket', kind: 'string', help: 'Podman API socket (/path or unix:///path), or "owned". Default: $CONTAINER_HOST, else owned' },
  { name: 'keep', kind: 'bool', help: 'keep the temporary directory (archives, config, server log, data dir)' },
];
const FILE_MIB = 8;
const SAMPLE_MS = 50;
type Format = 'tar' | 'tgz' | 'zip';
const MEDIA: Record<Format, string> = { tar: 'application/x-tar', tgz: 'application/gzip', zip: 'application/zip' };

/** Writes a zip (stored entries) of `mib` MiB of random files, streaming. */
async function makeZip(path: string, mib: number): Promise<void> {
  const out = createWriteStream(path);
  const central: Buffer[] = [];
  let offset = 0;
  const n = mib / FILE_MIB;
  for (let i = 0; i < n; i++) {
    const name = Buffer.from(`data/f${i}.bin`);
    const chunks = Array.from({ length: FILE_MIB }, () => randomBytes(MiB));
    let crc = 0;
    for (const c of chunks) crc = crc32(c, crc);
    const size = FILE_MIB * MiB;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc >>> 0, 14);
    local.writeUInt32LE(size, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    await write(out, Buffer.concat([local, name]));
    for (const c of chunks) await write(out, c);
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE((3 << 8) | 20, 4);
    c.writeUInt16LE(20, 6);
    c.writeUInt32LE(crc >>> 0, 16);
    c.writeUInt32LE(size, 20);
    c.writeUInt32LE(size, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    c.writeUInt32LE(offset, 42);
    central.push(c, name);
    offset += 30 + name.length + size;
  }
  const cd = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(n, 8);
  end.writeUInt16LE(n, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  await write(out, Buffer.concat([cd, end]));
  await new Promise<void>((r) => out.end(() => r()));
}

interface UploadResult {
  format: Format;
  bytes: number;
  status: number;
  ms: number;
  baselineRss: number;
  peakRss: number;
  rawMs: number | null;
}

/** Streams the archive from disk to POST /v1/workspaces, sampling the server's RSS meanwhile. */
async function upload(server: ServerChild, path: string, format: Format): Promise<Omit<UploadResult, 'rawMs' | 'baselineRss' | 'format'>> {
  const bytes = statSync(path).size;
  let peakRss = 0;
  const sampler = setInterval(() => {
    const m = procMemory(server.pid);
    if (m) peakRss = Math.max(peakRss, m.rss);
  }, SAMPLE_MS);
  const t0 = now();
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${server.url}/v1/workspaces`, { method: 'POST', headers: { 'content-type': MEDIA[format], 'content-length': bytes } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => {
        if (res.statusCode !== 201) process.stderr.write(`[bench] ${format}: ${res.statusCode} ${body.slice(0, 300)}\n`);
        resolve(res.statusCode ?? 0);
      });
    });
    req.on('error', reject);
    createReadStream(path).pipe(req);
  });
  const ms = now() - t0;
  clearInterval(sampler);
  return { bytes, status, ms, peakRss };
}

function rawExtract(path: string, format: Format, into: string): number | null {
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into);
  const t0 = now();
  try {
    if (format === 'zip') execFileSync('unzip', ['-q', path, '-d', into]);
    else execFileSync('tar', [format === 'tgz' ? '-xzf' : '-xf', path, '-C', into]);
  } catch {
    return null; // tool missing: no comparison
  } finally {
    rmSync(into, { recursive: true, force: true });
  }
  return now() - t0;
}

async function main(argv: readonly string[]): Promise<number> {
  let f: Map<string, string | number | boolean>;
  try {
    f = parseFlags(argv, FLAGS);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message ? `${err.message}\n` : ''}usage: npm run bench -- upload-memory [flags]\n${usage(FLAGS)}\n`);
      return err.message ? 2 : 0;
    }
    throw err;
  }
  const mib = Math.ceil(((f.get('mib') as number | undefined) ?? 200) / FILE_MIB) * FILE_MIB;
  const formats = String(f.get('formats') ?? 'tar,tgz,zip').split(',').filter((x): x is Format => x === 'tar' || x === 'tgz' || x === 'zip');
  const socketFlag = (f.get('socket') as string | undefined) ?? process.env.CONTAINER_HOST ?? 'owned';
  const socket = socketFlag === 'owned' ? null : socketFlag.replace(/^unix:\/\//, '');
  const say = (s: string) => process.stderr.write(`[bench] ${s}\n`);

  const root = repoRoot();
  const tmp = mkdtempSync(join(tmpdir(), 'sbx-upload-bench-'));
  const dataDir = join(tmp, 'data');
  const configPath = join(tmp, 'sandboxshift.yaml');
  // Archive limits raised so that the archive fits (defaults: 100 MB compressed, 1 GB expanded).
  const archive = { maxCompressedBytes: (mib + 16) * MiB, maxExpandedBytes: (mib + 16) * MiB };
  writeFileSync(configPath, `${JSON.stringify({ dataDir, listen: { host: '127.0.0.1', port: 0 }, engine: { socket }, workspaces: { archive } }, null, 2)}\n`);
  const env = { ...process.env };
  if (socket === null) {
    delete env.CONTAINER_HOST;
    delete env.DOCKER_HOST;
  }

  const paths: Record<Format, string> = { tar: join(tmp, 'a.tar'), tgz: join(tmp, 'a.tar.gz'), zip: join(tmp, 'a.zip') };
  for (const fmt of formats) {
    say(`writing a ${mib} MiB ${fmt} (random content) to ${paths[fmt]}`);
    if (fmt === 'zip') await makeZip(paths[fmt], mib);
    else await makeTarBytes(paths[fmt], mib * MiB, fmt === 'tgz', FILE_MIB * MiB);
  }

  const results: UploadResult[] = [];
  let server: ServerChild | null = null;
  let ok = true;
  try {
    server = await startServer({ root, configPath, env, logPath: join(tmp, 'server.log'), timeoutMs: 60_000 });
    say(`server pid ${server.pid} at ${server.url}`);
    for (const fmt of formats) {
      await sleep(1000);
      const samples: number[] = [];
      for (let i = 0; i < 10; i++) {
        samples.push(procMemory(server.pid)?.rss ?? 0);
        await sleep(SAMPLE_MS);
      }
      const baselineRss = median(samples);
      say(`uploading ${fmt}`);
      const r = await upload(server, paths[fmt], fmt);
      if (r.status !== 201) ok = false;
      const rawMs = rawExtract(paths[fmt], fmt, join(tmp, 'raw'));
      results.push({ format: fmt, baselineRss, rawMs, ...r });
      rmSync(join(dataDir, 'workspaces'), { recursive: true, force: true }); // keep the disk free between formats
      mkdirSync(join(dataDir, 'workspaces'));
    }
  } finally {
    if (server) await server.stop();
  }

  const rows = results.map((r) => [
    r.format,
    fmtMiB(r.bytes),
    String(r.status),
    fmtMiB(r.baselineRss),
    fmtMiB(r.peakRss),
    fmtMiB(r.peakRss - r.baselineRss),
    fmtRatio(r.peakRss - r.baselineRss, r.bytes),
    fmtMs(r.ms),
    `${(r.bytes / MiB / (r.ms / 1000)).toFixed(0)} MiB/s`,
    fmtMs(r.rawMs),
    fmtRatio(r.ms, r.rawMs),
  ]);
  process.stdout.write(
    [
      `upload-memory: ${mib} MiB archives (random content, ${FILE_MIB} MiB files), ${cpus().length} cores, load ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
      '',
      table(['format', 'archive', 'status', 'rss before', 'rss peak', 'growth', 'growth/archive', 'upload', 'throughput', 'raw extract', 'server/raw'], rows),
      '',
      'rss: the server process\'s VmRSS (sampled every 50 ms during the upload). growth/archive near 0 means memory stays flat:',
      'the body is streamed to disk, never held whole. raw extract: tar -xf / tar -xzf / unzip of the same file on the same disk.',
      '',
    ].join('\n'),
  );
  if (f.get('keep') === true) say(`kept ${tmp}`);
  else rmSync(tmp, { recursive: true, force: true });
  return ok ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
