/** Archives of random (incompressible) content, written streaming, for the upload benchmarks. */
import { randomBytes } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { createGzip } from 'node:zlib';

const MiB = 1024 * 1024;

export function write(out: WriteStream, b: Buffer): Promise<void> {
  return new Promise((r) => (out.write(b) ? r() : out.once('drain', () => r())));
}

export function tarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  const oct = (n: number, w: number) => n.toString(8).padStart(w - 1, '0') + '\0';
  h.write(name, 0);
  h.write(oct(0o644, 8), 100);
  h.write(oct(1000, 8), 108);
  h.write(oct(1000, 8), 116);
  h.write(oct(size, 12), 124);
  h.write(oct(1_700_000_000, 12), 136);
  h.write('0', 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return h;
}

/** Writes a tar (gzipped at level 1 when `gzip`) of `bytes` bytes of random files of at most `fileBytes` each. */
export async function makeTar(path: string, bytes: number, gzip: boolean, fileBytes = 8 * MiB): Promise<void> {
  const file = createWriteStream(path);
  const gz = gzip ? createGzip({ level: 1 }) : null;
  if (gz) gz.pipe(file);
  const out = (gz ?? file) as unknown as WriteStream;
  for (let i = 0, left = bytes; left > 0; i++) {
    const size = Math.min(fileBytes, left);
    left -= size;
    await write(out, tarHeader(`data/f${i}.bin`, size));
    for (let done = 0; done < size; done += MiB) await write(out, randomBytes(Math.min(MiB, size - done)));
    if (size % 512) await write(out, Buffer.alloc(512 - (size % 512)));
  }
  await write(out, Buffer.alloc(1024));
  await new Promise<void>((r) => (gz ? (file.once('close', () => r()), gz.end()) : file.end(() => r())));
}
