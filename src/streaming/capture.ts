import { StringDecoder } from 'node:string_decoder';

/** Largest prefix length ≤ limit of `buf` that does not end inside a UTF-8 character. */
export function utf8Boundary(buf: Buffer, limit: number): number {
  if (limit >= buf.length) return buf.length;
  let cut = limit;
  // Back off over continuation bytes (10xxxxxx) to the start of the split character.
  for (let i = 0; i < 3 && cut > 0 && (buf[cut]! & 0xc0) === 0x80; i++) cut--;
  return cut;
}

/** Bounded rolling buffer that keeps the last `capacity` bytes written to it. */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  dropped = 0;

  constructor(private readonly capacity: number) {}

  push(data: Buffer): void {
    if (this.capacity === 0) {
      this.dropped += data.length;
      return;
    }
    if (data.length >= this.capacity) {
      this.dropped += this.size + data.length - this.capacity;
      this.chunks = [Buffer.from(data.subarray(data.length - this.capacity))];
      this.size = this.capacity;
      return;
    }
    this.chunks.push(Buffer.from(data));
    this.size += data.length;
    while (this.size > this.capacity) {
      const first = this.chunks[0]!;
      const excess = this.size - this.capacity;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }

  get length(): number {
    return this.size;
  }

  take(): Buffer {
    const out = Buffer.concat(this.chunks, this.size);
    this.chunks = [];
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
