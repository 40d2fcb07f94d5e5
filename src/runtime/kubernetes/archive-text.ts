/**
 * The write-back as the gate prints it after its boundary line (gate.ts): the workspace's tar in
 * base64 lines, then `<boundary> END <cksum CRC> <tar bytes>` or `<boundary> FAILED <why>`. The
 * decoder takes that text in chunks of any size (the attach stream's, or pods/log lines), passes
 * the decoded tar on as it goes and holds no more than one line; it settles once: verified when
 * the end line matches the bytes decoded (count and POSIX cksum CRC), failed with the reason
 * otherwise (a line that is not base64, a mismatch, a FAILED line, or no end line at all).
 */

/** Longest line taken as a line of the archive (the gate's base64 wraps at 76 characters). */
const MAX_LINE = 4096;
const BASE64_LINE = /^[A-Za-z0-9+/]*={0,2}$/;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 24;
    for (let k = 0; k < 8; k++) c = c & 0x80000000 ? (c << 1) ^ 0x04c11db7 : c << 1;
    table[i] = c >>> 0;
  }
  return table;
})();

/** The CRC that POSIX `cksum` prints (CRC-32/CKSUM over the data, then its length). */
export class Cksum {
  private crc = 0;
  private length = 0;

  update(data: Uint8Array): void {
    let crc = this.crc;
    for (let i = 0; i < data.length; i++) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ data[i]!) & 0xff]!) >>> 0;
    this.crc = crc;
    this.length += data.length;
  }

  get bytes(): number {
    return this.length;
  }

  digest(): number {
    let crc = this.crc;
    for (let n = this.length; n > 0; n = Math.floor(n / 256)) crc = ((crc << 8) ^ CRC_TABLE[((crc >>> 24) ^ n) & 0xff]!) >>> 0;
    return ~crc >>> 0;
  }
}

/** A failure `byPod` is what the pod itself said (a FAILED end line): another copy of the text says the same. */
export type ArchiveResult = { ok: true; bytes: number } | { ok: false; reason: string; byPod?: boolean };

export class ArchiveDecoder {
  private line = '';
  /** Base64 characters not yet decoded (fewer than 4). */
  private carry = '';
  private padded = false;
  private readonly sum = new Cksum();
  private settled: ArchiveResult | null = null;
  private readonly endPrefix: string;

  constructor(
    boundary: string,
    private readonly out: (data: Buffer) => void,
    private readonly done: (result: ArchiveResult) => void,
  ) {
    this.endPrefix = `${boundary} `;
  }

  get result(): ArchiveResult | null {
    return this.settled;
  }

  push(chunk: Buffer | string): void {
    if (this.settled) return;
    const text = typeof chunk === 'string' ? chunk : chunk.toString('latin1');
    let start = 0;
    while (!this.settled) {
      const nl = text.indexOf('\n', start);
      if (nl < 0) {
        this.line += text.slice(start);
        if (this.line.length > MAX_LINE) this.fail('a line of the archive is too long: the text after the boundary is not the archive the pod printed');
        return;
      }
      const line = this.line + text.slice(start, nl);
      this.line = '';
      start = nl + 1;
      this.onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
    }
  }

  /** The text ended: without its end line the archive is incomplete. */
  end(): void {
    if (this.settled) return;
    if (this.line.startsWith(this.endPrefix)) {
      const line = this.line;
      this.line = '';
      this.onLine(line);
      if (this.settled) return;
    }
    this.fail(`the archive is incomplete: it ended after ${this.sum.bytes} bytes, before its end line`);
  }

  /** Stops with this reason (the source of the text went away). */
  fail(reason: string, byPod = false): void {
    if (this.settled) return;
    this.settled = byPod ? { ok: false, reason, byPod } : { ok: false, reason };
    this.done(this.settled);
  }

  private onLine(line: string): void {
    if (line.startsWith(this.endPrefix)) return this.onEnd(line.slice(this.endPrefix.length));
    if (line === '') return;
    if (!BASE64_LINE.test(line) || (this.padded && line.length > 0)) {
      return this.fail(`the archive was altered: a line after the boundary is not base64 (after ${this.sum.bytes} bytes)`);
    }
    if (line.endsWith('=')) this.padded = true;
    const all = this.carry + line;
    const whole = all.length - (all.length % 4);
    this.carry = all.slice(whole);
    if (whole > 0) this.emit(Buffer.from(all.slice(0, whole), 'base64'));
  }

  private emit(data: Buffer): void {
    this.sum.update(data);
    this.out(data);
  }

  private onEnd(rest: string): void {
    if (rest.startsWith('FAILED')) return this.fail(`the pod could not send it: ${rest.slice('FAILED'.length).trim() || 'no reason given'}`, true);
    const m = /^END (\d+) (\d+)$/.exec(rest.trim());
    if (!m) return this.fail(`the archive's end line is not understood (${JSON.stringify(rest.slice(0, 80))})`);
    if (this.carry.length > 0) return this.fail(`the archive was altered: its base64 text does not end on a whole group (after ${this.sum.bytes} bytes)`);
    const crc = Number(m[1]);
    const bytes = Number(m[2]);
    if (bytes !== this.sum.bytes) return this.fail(`the archive is incomplete or altered: ${this.sum.bytes} bytes arrived, the pod sent ${bytes}`);
    if (crc !== this.sum.digest()) return this.fail(`the archive was altered: its checksum does not match the pod's (${this.sum.digest()} instead of ${crc})`);
    this.settled = { ok: true, bytes };
    this.done(this.settled);
  }
}

/** Where the boundary line starts in log text (at the start of a line), or -1. */
export function markerLineAt(text: Buffer, boundary: string): number {
  const line = Buffer.from(`${boundary}\n`);
  let at = text.indexOf(line);
  while (at > 0 && text[at - 1] !== 0x0a) at = text.indexOf(line, at + 1);
  return at;
}

/** True when log text holds the archive's end line (END or FAILED) at the start of a line. */
export function hasEndLine(text: Buffer, boundary: string): boolean {
  for (const word of ['END ', 'FAILED']) {
    const needle = Buffer.from(`${boundary} ${word}`);
    let at = text.indexOf(needle);
    while (at > 0 && text[at - 1] !== 0x0a) at = text.indexOf(needle, at + 1);
    if (at >= 0) return true;
  }
  return false;
}
