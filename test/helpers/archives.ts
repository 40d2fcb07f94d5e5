import { crc32, deflateRawSync, gzipSync } from 'node:zlib';

/**
 * Archive builders for tests: they write the bytes by hand so a test can produce entries no
 * well-behaved tool would (absolute names, `..`, devices, NUL in names, lying size fields).
 */

export interface TarEntry {
  name: string;
  /** '0' file, '1' hardlink, '2' symlink, '3' char device, '4' block device, '5' directory, '6' FIFO */
  type?: string;
  data?: Buffer | string;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function header(name: string, e: TarEntry, type: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name.slice(0, 100), 0, 'utf8');
  h.write(octal(e.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100, 'latin1');
  h.write(octal(e.uid ?? 1000, 8), 108, 'latin1');
  h.write(octal(e.gid ?? 1000, 8), 116, 'latin1');
  h.write(octal(size, 12), 124, 'latin1');
  h.write(octal(1_700_000_000, 12), 136, 'latin1');
  h.write(type, 156, 'latin1');
  h.write((e.linkname ?? '').slice(0, 100), 157, 'utf8');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.write('user', 265, 'latin1');
  h.write('user', 297, 'latin1');
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

function pad(b: Buffer): Buffer {
  const rest = b.length % 512;
  return rest === 0 ? b : Buffer.concat([b, Buffer.alloc(512 - rest)]);
}

function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
  return `${len}${body}`;
}

/** A tar archive; names or link names over 100 bytes (or with NUL) go into a pax header. */
export function tar(entries: TarEntry[], opts: { end?: boolean } = {}): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? '0';
    const data = Buffer.from(e.data ?? '');
    const pax: string[] = [];
    if (Buffer.byteLength(e.name) > 100 || e.name.includes('\0')) pax.push(paxRecord('path', e.name));
    if (e.linkname && (Buffer.byteLength(e.linkname) > 100 || e.linkname.includes('\0'))) pax.push(paxRecord('linkpath', e.linkname));
    if (pax.length > 0) {
      const body = Buffer.from(pax.join(''));
      out.push(header('PaxHeader', {}, 'x', body.length), pad(body));
    }
    out.push(header(e.name.replace(/\0/g, ''), e, type, type === '0' ? data.length : 0));
    if (type === '0' && data.length > 0) out.push(pad(data));
  }
  if (opts.end !== false) out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

export const tgz = (entries: TarEntry[]) => gzipSync(tar(entries));

export interface ZipEntry {
  name: string;
  data?: Buffer | string;
  /** Full unix mode including the type bits (e.g. 0o120777 for a symlink). */
  mode?: number;
  /** 0 stored, 8 deflated (default). */
  method?: 0 | 8;
  /** Uncompressed size written into the headers (a lie when it differs from the data). */
  claimedSize?: number;
}

/** A zip archive with Unix attributes (version made by 3) and UTF-8 names. */
export function zip(entries: ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const data = Buffer.from(e.data ?? '');
    const method = e.method ?? 8;
    const body = method === 8 ? deflateRawSync(data) : data;
    const name = Buffer.from(e.name, 'utf8');
    const crc = crc32(data) >>> 0;
    const size = e.claimedSize ?? data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x800, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(0, 10);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    locals.push(local, name, body);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(0, 12);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((e.mode ?? (e.name.endsWith('/') ? 0o40755 : 0o100644)) << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

/** A multipart/form-data body (boundary `sbxboundary`) with a `task` JSON part and a `workspace` tar part, as a latin1 string. */
export function multipartBody(task: unknown, archive: Buffer, type = 'application/x-tar'): string {
  return [
    '--sbxboundary\r\nContent-Disposition: form-data; name="task"\r\nContent-Type: application/json\r\n\r\n',
    JSON.stringify(task),
    `\r\n--sbxboundary\r\nContent-Disposition: form-data; name="workspace"; filename="w.tar"\r\nContent-Type: ${type}\r\n\r\n`,
    archive.toString('latin1'),
    '\r\n--sbxboundary--\r\n',
  ].join('');
}

/**
 * A zip whose central directory lists `records` entries (distinct names) that all point at the
 * one local entry at offset 0: an overlapping zip bomb that expands `records` times from one copy.
 */
export function overlappingZip(data: Buffer, records: number): Buffer {
  const one = zip([{ name: 'e0', data }]);
  const cdStart = one.readUInt32LE(one.length - 22 + 16);
  const cdLen = one.readUInt32LE(one.length - 22 + 12);
  const central = one.subarray(cdStart, cdStart + cdLen);
  const centrals: Buffer[] = [];
  for (let i = 0; i < records; i++) {
    const name = Buffer.from(`e${i}`.padEnd(6, '_'));
    const c = Buffer.from(central.subarray(0, 46));
    c.writeUInt16LE(name.length, 28);
    centrals.push(c, name);
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(records, 8);
  end.writeUInt16LE(records, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(cdStart, 16);
  return Buffer.concat([one.subarray(0, cdStart), cd, end]);
}

/** A well-formed zip whose central directory lists its entries in reverse order of their data. */
export function reorderedZip(entries: ZipEntry[]): Buffer {
  const z = zip(entries);
  const cdStart = z.readUInt32LE(z.length - 22 + 16);
  const records: Buffer[] = [];
  for (let off = cdStart; off < z.length - 22; ) {
    const len = 46 + z.readUInt16LE(off + 28) + z.readUInt16LE(off + 30) + z.readUInt16LE(off + 32);
    records.push(z.subarray(off, off + len));
    off += len;
  }
  return Buffer.concat([z.subarray(0, cdStart), ...records.reverse(), z.subarray(z.length - 22)]);
}
