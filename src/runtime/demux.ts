import type { StreamName } from './engine.js';

/**
 * Splits Docker's multiplexed attach stream: each frame is an 8-byte header (stream type, 3 zero
 * bytes, big-endian payload length) followed by the payload. Type 1 is stdout, 2 stderr; Podman
 * may write its own attach errors as stderr.
 */
export class StreamDemuxer {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly emit: (stream: StreamName, data: Buffer) => void) {}

  push(chunk: Buffer): void {
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (buf.length >= 8) {
      const type = buf[0];
      const size = buf.readUInt32BE(4);
      if (buf.length < 8 + size) break;
      const payload = buf.subarray(8, 8 + size);
      if (size > 0) this.emit(type === 1 ? 'stdout' : 'stderr', payload);
      buf = buf.subarray(8 + size);
    }
    this.pending = buf.length ? Buffer.from(buf) : Buffer.alloc(0);
  }
}
