/**
 * Reads the server name (SNI) out of the first bytes a client sends through a CONNECT tunnel
 * (pure, bounded). Only as much of TLS is parsed as that needs: handshake records (type 22) are
 * joined until the first handshake message is complete, which must be a ClientHello (type 1);
 * its server_name extension (type 0) gives the first host_name entry (type 0).
 */
export type ClientHelloResult =
  /** More bytes are needed (and `maxBytes` is not reached yet). */
  | { kind: 'incomplete' }
  /** The first byte is not a TLS handshake record: some other protocol. */
  | { kind: 'not_tls' }
  /** TLS, but not a well-formed ClientHello within `maxBytes`. */
  | { kind: 'malformed'; why: string }
  /** A ClientHello; `sni` is null when it has no host_name. */
  | { kind: 'hello'; sni: string | null; bytes: number };

const HANDSHAKE = 22;
const CLIENT_HELLO = 1;
const MAX_RECORD = 16384;

/** Parses the bytes received so far; `maxBytes` bounds how much may be needed (e.g. 16 KiB). */
export function parseClientHello(buf: Buffer, maxBytes: number): ClientHelloResult {
  if (buf.length === 0) return { kind: 'incomplete' };
  if (buf[0] !== HANDSHAKE) return { kind: 'not_tls' };
  const parts: Buffer[] = [];
  let have = 0;
  let off = 0;
  let need: number | null = null;
  for (;;) {
    if (off + 5 > buf.length) return more(buf, maxBytes);
    if (buf[off] !== HANDSHAKE) return { kind: 'malformed', why: 'a non-handshake record inside the ClientHello' };
    if (buf[off + 1] !== 3) return { kind: 'malformed', why: 'not a TLS record version' };
    const len = buf.readUInt16BE(off + 3);
    if (len === 0 || len > MAX_RECORD) return { kind: 'malformed', why: 'bad record length' };
    if (off + 5 + len > maxBytes) return { kind: 'malformed', why: `ClientHello larger than ${maxBytes} bytes` };
    if (off + 5 + len > buf.length) return more(buf, maxBytes);
    parts.push(buf.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (need === null && have >= 4) {
      const hs = Buffer.concat(parts);
      if (hs[0] !== CLIENT_HELLO) return { kind: 'malformed', why: 'first handshake message is not a ClientHello' };
      need = 4 + hs.readUIntBE(1, 3);
    }
    if (need !== null && have >= need) {
      const body = Buffer.concat(parts).subarray(4, need);
      const sni = serverName(body);
      return typeof sni === 'object' && sni !== null ? { kind: 'malformed', why: sni.why } : { kind: 'hello', sni, bytes: off };
    }
  }
}

function more(buf: Buffer, maxBytes: number): ClientHelloResult {
  return buf.length >= maxBytes ? { kind: 'malformed', why: `ClientHello larger than ${maxBytes} bytes` } : { kind: 'incomplete' };
}

/** The host_name of a ClientHello body (after the 4-byte handshake header), null, or why it is malformed. */
function serverName(b: Buffer): string | null | { why: string } {
  const bad = { why: 'truncated ClientHello' };
  let p = 2 + 32; // legacy_version, random
  if (p + 1 > b.length) return bad;
  p += 1 + b[p]!; // session id
  if (p + 2 > b.length) return bad;
  p += 2 + b.readUInt16BE(p); // cipher suites
  if (p + 1 > b.length) return bad;
  p += 1 + b[p]!; // compression methods
  if (p === b.length) return null; // no extensions at all
  if (p + 2 > b.length) return bad;
  const end = p + 2 + b.readUInt16BE(p);
  if (end > b.length) return bad;
  p += 2;
  while (p < end) {
    if (p + 4 > end) return bad;
    const type = b.readUInt16BE(p);
    const len = b.readUInt16BE(p + 2);
    const data = p + 4;
    if (data + len > end) return bad;
    if (type === 0) return hostName(b.subarray(data, data + len));
    p = data + len;
  }
  return null;
}

function hostName(ext: Buffer): string | null | { why: string } {
  const bad = { why: 'malformed server_name extension' };
  if (ext.length < 2 || 2 + ext.readUInt16BE(0) !== ext.length) return bad;
  let p = 2;
  while (p < ext.length) {
    if (p + 3 > ext.length) return bad;
    const type = ext[p]!;
    const len = ext.readUInt16BE(p + 1);
    if (p + 3 + len > ext.length) return bad;
    if (type === 0) {
      const name = ext.subarray(p + 3, p + 3 + len).toString('latin1');
      if (len === 0 || /[^\x21-\x7e]/.test(name)) return bad;
      return name;
    }
    p += 3 + len;
  }
  return null;
}

/** Whether an SNI names the CONNECT host: case-insensitive, a trailing dot ignored. */
export function sniMatches(sni: string, host: string): boolean {
  const norm = (h: string) => h.toLowerCase().replace(/\.$/, '');
  return norm(sni) === norm(host);
}
