import { StringDecoder } from 'node:string_decoder';

/** Largest prefix length ≤ limit of `buf` that does not end inside a UTF-8 character. */
export function utf8Boundary(buf: Buffer, limit: number): number {
  if (limit >= buf.length) return buf.length;
  let cut = limit;
  // Back off over continuation bytes (10xxxxxx) to the start of the split character.
  for (let i = 0; i < 3 && cut > 0 && (buf[cut]! & 0xc0) === 0x80; i++) cut--;
  return cut;
}

/**
 * Bounded rolling buffer that keeps the last `capacity` bytes written to it: one ring of that
 * size, made on the first write, whatever the number and size of the writes.
 */
export class TailBuffer {
  private ring: Buffer | null = null;
  /** Where the next byte goes. */
  private end = 0;
  private size = 0;
  dropped = 0;

  constructor(private readonly capacity: number) {}

  push(data: Buffer): void {
    const cap = this.capacity;
    if (cap === 0) {
      this.dropped += data.length;
      return;
    }
    const ring = (this.ring ??= Buffer.allocUnsafe(cap));
    let src = data;
    if (src.length >= cap) {
      src = src.subarray(src.length - cap);
      this.end = 0;
    }
    const first = Math.min(src.length, cap - this.end);
    src.copy(ring, this.end, 0, first);
    src.copy(ring, 0, first);
    this.end = (this.end + src.length) % cap;
    const total = this.size + data.length;
    this.size = Math.min(total, cap);
    this.dropped += total - this.size;
  }

  get length(): number {
    return this.size;
  }

  take(): Buffer {
    const ring = this.ring;
    let out = Buffer.alloc(0);
    if (ring && this.size > 0) {
      const start = (this.end - this.size + this.capacity) % this.capacity;
      out = start < this.end ? Buffer.from(ring.subarray(start, this.end)) : Buffer.concat([ring.subarray(start), ring.subarray(0, this.end)], this.size);
    }
    this.ring = null;
    this.end = 0;
    this.size = 0;
    return out;
  }
}

export interface CaptureSink {
  /** Decoded text for a live frame (never splits a character). */
  text(data: string): void;
  /** Exact bytes kept for this stream. */
  bytes(data: Buffer): void;
}

/**
 * One stream's output policy: the first `headBytes` go out live; after
 * that, bytes go to a bounded rolling tail that is emitted once, at exit, after a gap marker.
 */
export class StreamCapture {
  private readonly decoder = new StringDecoder('utf8');
  private headRoom: number;
  private headFull = false;
  private readonly tail: TailBuffer;
  produced = 0;

  constructor(
    headBytes: number,
    tailBytes: number,
    private readonly frameBytes: number,
    private readonly sink: CaptureSink,
  ) {
    this.headRoom = headBytes;
    this.tail = new TailBuffer(tailBytes);
  }

  /**
   * Continues a capture an earlier run began: `kept` bytes of the head are already recorded and
   * `lastBytes` are their end (a character split there is completed by what follows).
   */
  resume(kept: number, lastBytes: Buffer): void {
    this.produced = kept;
    this.headRoom = Math.max(0, this.headRoom - kept);
    const cut = utf8Boundary(lastBytes, lastBytes.length - 1);
    const lead = lastBytes.length ? lastBytes[cut]! : 0;
    const need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    if (lastBytes.length - cut < need) this.decoder.write(lastBytes.subarray(cut));
  }

  /** True once the head is used up (later bytes go to the tail, which lives in memory). */
  get headDone(): boolean {
    return this.headFull || this.headRoom === 0;
  }

  push(data: Buffer): void {
    this.produced += data.length;
    let rest = data;
    if (!this.headFull) {
      const cut = utf8Boundary(rest, this.headRoom);
      const head = rest.subarray(0, cut);
      if (head.length) {
        this.headRoom -= head.length;
        this.sink.bytes(head);
        // Frames carry at most frameBytes (+3 for a character the decoder held back).
        for (let i = 0; i < head.length; i += this.frameBytes) {
          const text = this.decoder.write(head.subarray(i, i + this.frameBytes));
          if (text) this.sink.text(text);
        }
      }
      rest = rest.subarray(cut);
      if (rest.length) this.closeHead();
    }
    if (rest.length) this.tail.push(rest);
  }

  private closeHead(): void {
    this.headFull = true;
    const text = this.decoder.end();
    if (text) this.sink.text(text);
  }

  /** Decodes kept bytes into frame-sized texts (used for the tail at exit). */
  static frames(buf: Buffer, frameBytes: number): string[] {
    const decoder = new StringDecoder('utf8');
    const out: string[] = [];
    for (let i = 0; i < buf.length; i += frameBytes) {
      const text = decoder.write(buf.subarray(i, i + frameBytes));
      if (text) out.push(text);
    }
    const rest = decoder.end();
    if (rest) out.push(rest);
    return out;
  }

  /** At exit: flushes the decoder and returns what the tail kept and how much was dropped. */
  finish(): { tail: Buffer; dropped: number } {
    if (!this.headFull) {
      const text = this.decoder.end();
      if (text) this.sink.text(text);
      return { tail: Buffer.alloc(0), dropped: 0 };
    }
    return { dropped: this.tail.dropped, tail: this.tail.take() };
  }
}
