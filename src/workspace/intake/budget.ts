import { AppError } from '../../errors.js';

export interface ArchiveLimits {
  maxCompressedBytes: number;
  maxExpandedBytes: number;
  maxEntries: number;
  maxCompressionRatio: number;
  ratioGraceBytes: number;
}

/**
 * Counts what an intake has written so far (entries and real bytes, never header claims) and
 * throws the error that names the bound as soon as one is passed. One budget per intake.
 */
export class IntakeBudget {
  entries = 0;
  bytes = 0;

  constructor(readonly limits: ArchiveLimits) {}

  entry(entry: string): void {
    this.entries += 1;
    if (this.entries > this.limits.maxEntries) {
      throw new AppError('ARCHIVE_TOO_MANY_ENTRIES', {
        entry,
        entries: this.entries,
        limit: this.limits.maxEntries,
        bound: 'workspaces.archive.maxEntries',
      });
    }
  }

  addBytes(entry: string, n: number): void {
    this.bytes += n;
    if (this.bytes > this.limits.maxExpandedBytes) {
      throw new AppError('ARCHIVE_EXPANDED_TOO_LARGE', {
        entry,
        bytes: this.bytes,
        limit: this.limits.maxExpandedBytes,
        bound: 'workspaces.archive.maxExpandedBytes',
      });
    }
  }

  /** Bomb check on a decompressor's running totals (gzip stream, or all zip entries so far). */
  checkRatio(compressed: number, expanded: number, entry?: string): void {
    if (expanded <= this.limits.ratioGraceBytes) return;
    const ratio = expanded / Math.max(1, compressed);
    if (ratio > this.limits.maxCompressionRatio) {
      throw new AppError('ARCHIVE_COMPRESSION_RATIO', {
        ...(entry === undefined ? {} : { entry }),
        compressedBytes: compressed,
        expandedBytes: expanded,
        ratio: Math.round(ratio),
        limit: this.limits.maxCompressionRatio,
        bound: 'workspaces.archive.maxCompressionRatio',
      });
    }
  }

  /** The compressed body itself. */
  checkCompressed(bytes: number): void {
    if (bytes > this.limits.maxCompressedBytes) {
      throw new AppError('ARCHIVE_TOO_LARGE', { bytes, limit: this.limits.maxCompressedBytes, bound: 'workspaces.archive.maxCompressedBytes' });
    }
  }
}
