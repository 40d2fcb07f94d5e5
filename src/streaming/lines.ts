/**
 * Splits byte chunks into complete lines without ever decoding half a UTF-8 character: the
 * partial last line stays as bytes until its newline arrives.
 */
export class LineSplitter {
  private carry: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): string[] {
    const data = this.carry.length ? Buffer.concat([this.carry, chunk]) : chunk;
    const end = data.lastIndexOf(0x0a);
    if (end < 0) {
      this.carry = Buffer.from(data);
      return [];
    }
    this.carry = Buffer.from(data.subarray(end + 1));
    return data.toString('utf8', 0, end).split('\n');
  }

  get pending(): number {
    return this.carry.length;
  }
}
