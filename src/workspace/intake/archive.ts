import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { AppError } from '../../errors.js';
import { extractTar } from './tar.js';
import type { TreeWriter } from './writer.js';
import { extractZip } from './zip.js';

export type ArchiveKind = 'tar' | 'gzip' | 'zip';

/** Media types an archive body may be sent as; octet-stream means "look at the content". */
export const ARCHIVE_MEDIA_TYPES: Record<string, ArchiveKind | null> = {
  'application/x-tar': 'tar',
  'application/gzip': 'gzip',
  'application/x-gzip': 'gzip',
  'application/zip': 'zip',
  'application/octet-stream': null,
};

const SNIFF_BYTES = 262;

/** The archive type from its first bytes: gzip 1f8b, zip PK\3\4 or PK\5\6, tar "ustar" at offset 257. */
export function sniff(head: Buffer): ArchiveKind | null {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && ((head[2] === 3 && head[3] === 4) || (head[2] === 5 && head[3] === 6))) {
    return 'zip';
  }
  if (head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  return null;
}

/** Reads the first `n` bytes of a stream (fewer at its end) and returns them with the rest of the stream. */
async function peek(source: AsyncIterable<Buffer>, n: number): Promise<{ head: Buffer; rest: AsyncIterator<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const parts: Buffer[] = [];
  let size = 0;
  while (size < n) {
    const r = await it.next();
    if (r.done) break;
    parts.push(r.value);
    size += r.value.length;
  }
  return { head: Buffer.concat(parts), rest: it };
}

async function* chain(head: Buffer, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  if (head.length > 0) yield head;
  for (;;) {
    const r = await rest.next();
    if (r.done) return;
    yield r.value;
  }
}

/** Maps what is not ours (zlib, parser and stream errors) to ARCHIVE_CORRUPT; file-system errors pass. */
function asArchiveError(err: unknown, format: string): unknown {
  if (err instanceof AppError || (err as NodeJS.ErrnoException)?.syscall !== undefined) return err;
  return new AppError('ARCHIVE_CORRUPT', { format, reason: err instanceof Error ? err.message : String(err) });
}

export interface ArchiveOptions {
  /** The request's media type (null: octet-stream, take the content's). */
  declared: ArchiveKind | null;
  declaredType: string;
  /** Where a zip is spooled (removed in all cases). */
  tmpDir: string;
}

/**
 * Streams an archive body into the writer's staging directory. The body is counted against the
 * compressed limit as it arrives; gzip is inflated on the fly (counting the ratio) and must hold
 * a tar; zip is spooled to a bounded temporary file first.
 */
export async function extractArchive(body: AsyncIterable<Buffer>, writer: TreeWriter, opts: ArchiveOptions): Promise<ArchiveKind> {
  const budget = writer.budget;
  let compressed = 0;
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of body) {
      compressed += chunk.length;
      budget.checkCompressed(compressed);
      yield chunk;
    }
  }
  const { head, rest } = await peek(counted(), SNIFF_BYTES);
  const kind = sniff(head);
  if (kind === null || (opts.declared !== null && opts.declared !== kind)) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', {
      declared: opts.declaredType,
      sniffed: kind ?? 'unknown',
      accepted: Object.keys(ARCHIVE_MEDIA_TYPES),
      rule: kind === null ? 'content_is_not_tar_gzip_or_zip' : 'content_does_not_match_content_type',
    });
  }
  const input = chain(head, rest);
  try {
    if (kind === 'tar') await extractTar(Readable.from(input), writer);
    else if (kind === 'gzip') await extractTar(Readable.from(gunzipToTar(input, budget, () => compressed, opts.declaredType)), writer);
    else await spoolZip(input, writer, opts.tmpDir, () => compressed);
  } catch (err) {
    throw asArchiveError(err, kind);
  }
  return kind;
}

/** Inflates gzip, checking the ratio against the compressed bytes so far; the content must be a tar. */
async function* gunzipToTar(input: AsyncGenerator<Buffer>, budget: TreeWriter['budget'], compressed: () => number, declaredType: string) {
  const source = Readable.from(input);
  const gunzip = createGunzip();
  source.on('error', (err) => gunzip.destroy(err));
  source.pipe(gunzip);
  let expanded = 0;
  let checked = false;
  let head = Buffer.alloc(0);
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      expanded += chunk.length;
      budget.checkRatio(compressed(), expanded);
      if (!checked) {
        head = Buffer.concat([head, chunk]);
        if (head.length < SNIFF_BYTES) continue;
        checked = true;
        if (sniff(head) !== 'tar') {
          throw new AppError('UNSUPPORTED_MEDIA_TYPE', { declared: declaredType, sniffed: 'gzip', rule: 'gzip_content_is_not_tar' });
        }
        yield head;
        continue;
      }
      yield chunk;
    }
    if (!checked) {
      if (head.length > 0 && sniff(head) !== 'tar') {
        throw new AppError('UNSUPPORTED_MEDIA_TYPE', { declared: declaredType, sniffed: 'gzip', rule: 'gzip_content_is_not_tar' });
      }
      yield head;
    }
  } finally {
    source.destroy();
    gunzip.destroy();
  }
}

async function spoolZip(input: AsyncGenerator<Buffer>, writer: TreeWriter, tmpDir: string, compressed: () => number): Promise<void> {
  // 0711 like the data directory: git intake (UID 65532) must traverse it to its own clone directory.
  await mkdir(tmpDir, { recursive: true, mode: 0o711 });
  const file = join(tmpDir, `upload-${randomBytes(8).toString('hex')}.zip`);
  try {
    await pipeline(Readable.from(input), createWriteStream(file, { flags: 'wx', mode: 0o600 }));
    await extractZip(file, compressed(), writer);
  } finally {
    await rm(file, { force: true });
  }
}
