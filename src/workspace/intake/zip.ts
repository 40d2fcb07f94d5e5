import type { Readable } from 'node:stream';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { AppError } from '../../errors.js';
import type { TreeWriter } from './writer.js';

const S_IFMT = 0o170000;
const TYPES: Record<number, string> = {
  0o140000: 'socket',
  0o120000: 'symlink',
  0o100000: 'file',
  0o060000: 'block_device',
  0o040000: 'dir',
  0o020000: 'character_device',
  0o010000: 'fifo',
};
const MAX_LINK_TARGET = 4096;

const corrupt = (reason: string, entry?: string) =>
  new AppError('ARCHIVE_CORRUPT', { format: 'zip', reason, ...(entry === undefined ? {} : { entry }) });

/**
 * Entries must lie one after another without sharing bytes: each local header starts at or after
 * the end of the previous entry's data, and the last entry's data ends before the central
 * directory. A central directory that points several records at the same data (an overlapping
 * zip bomb, expanding many times from one copy) or back to earlier bytes is refused.
 */
class EntryLayout {
  private end = 0;
  private index = 0;

  constructor(private readonly centralDirectoryOffset: number) {}

  async check(zip: ZipFile, entry: Entry, name: string): Promise<void> {
    const start = entry.relativeOffsetOfLocalHeader;
    const index = this.index++;
    if (start < this.end) {
      throw new AppError('ARCHIVE_CORRUPT', {
        format: 'zip',
        rule: 'overlapping_entries',
        entry: name,
        index,
        localHeaderOffset: start,
        previousEntryEnd: this.end,
      });
    }
    const header = await new Promise<{ fileDataStart: number }>((resolve, reject) =>
      zip.readLocalFileHeader(entry, { minimal: true }, (err, h) => (err ? reject(corrupt(err.message, name)) : resolve(h))),
    );
    this.end = header.fileDataStart + entry.compressedSize;
    if (this.end > this.centralDirectoryOffset) {
      throw new AppError('ARCHIVE_CORRUPT', {
        format: 'zip',
        rule: 'overlapping_entries',
        entry: name,
        index,
        entryEnd: this.end,
        centralDirectoryOffset: this.centralDirectoryOffset,
      });
    }
  }
}

/**
 * Extracts a zip that was spooled to `file` (zip needs random access to its central directory).
 * Sizes in the headers are not trusted: yauzl's size validation is off, and the bytes actually
 * inflated are counted against the expanded limit and the compression ratio (against the
 * spooled size), so entries that claim small sizes but inflate far more stop at the limit.
 * Entries that share or reorder their data are refused (EntryLayout).
 */
export async function extractZip(file: string, spooledBytes: number, writer: TreeWriter): Promise<void> {
  const zip = await new Promise<ZipFile>((resolve, reject) =>
    yauzl.open(file, { lazyEntries: true, decodeStrings: false, validateEntrySizes: false, autoClose: false }, (err, z) =>
      err ? reject(corrupt(err.message)) : resolve(z),
    ),
  );
  try {
    // Before the first readEntry yauzl's cursor is the central directory's offset.
    const layout = new EntryLayout((zip as unknown as { readEntryCursor: number }).readEntryCursor);
    let inflated = 0;
    for (;;) {
      const entry = await nextEntry(zip);
      if (entry === null) return;
      const name = decodeName(entry);
      await layout.check(zip, entry, name);
      const type = entryType(entry, name);
      if (type === 'dir') {
        await writer.dir(name, unixMode(entry) ?? 0o755);
      } else if (type === 'file') {
        await writer.file(name, unixMode(entry) ?? 0o644, async (write) => {
          const stream = await openStream(zip, entry, name);
          try {
            for await (const chunk of stream as AsyncIterable<Buffer>) {
              inflated += chunk.length;
              writer.budget.checkRatio(spooledBytes, inflated, name);
              await write(chunk);
            }
          } finally {
            stream.destroy();
          }
        });
      } else if (type === 'symlink') {
        const stream = await openStream(zip, entry, name);
        const parts: Buffer[] = [];
        let size = 0;
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > MAX_LINK_TARGET) {
            stream.destroy();
            throw new AppError('WORKSPACE_LINK_ESCAPE', { entry: name, rule: 'symlink_target_invalid', bytes: size });
          }
          parts.push(chunk);
        }
        await writer.symlink(name, Buffer.concat(parts).toString('utf8'));
      } else {
        writer.special(name, type);
      }
    }
  } finally {
    zip.close();
  }
}

function nextEntry(zip: ZipFile): Promise<Entry | null> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      zip.removeListener('entry', onEntry);
      zip.removeListener('end', onEnd);
      zip.removeListener('error', onError);
    };
    const onEntry = (e: Entry) => (cleanup(), resolve(e));
    const onEnd = () => (cleanup(), resolve(null));
    const onError = (err: Error) => (cleanup(), reject(corrupt(err.message)));
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}

function openStream(zip: ZipFile, entry: Entry, name: string): Promise<Readable> {
  return new Promise((resolve, reject) =>
    zip.openReadStream(entry, (err, stream) => {
      if (err || !stream) return reject(corrupt(err?.message ?? 'no stream', name));
      // Inflate errors (bad data, truncation) surface on the stream; the iterator rethrows them.
      stream.on('error', () => undefined);
      resolve(stream);
    }),
  );
}

/** UTF-8 when the entry says so (general purpose bit 11), otherwise bytes as latin1 (never lossy for checks). */
function decodeName(entry: Entry): string {
  const raw = entry.fileName as unknown as Buffer;
  return (entry.generalPurposeBitFlag & 0x800) !== 0 ? raw.toString('utf8') : raw.toString('latin1');
}

/** Unix mode bits when the entry was made on Unix (version made by, high byte 3). */
function unixMode(entry: Entry): number | null {
  if (entry.versionMadeBy >> 8 !== 3) return null;
  const mode = entry.externalFileAttributes >>> 16;
  return mode === 0 ? null : mode;
}

function entryType(entry: Entry, name: string): string {
  const mode = unixMode(entry);
  if (mode !== null && (mode & S_IFMT) !== 0) return TYPES[mode & S_IFMT] ?? `unsupported_mode:${(mode & S_IFMT).toString(8)}`;
  return name.endsWith('/') ? 'dir' : 'file';
}
