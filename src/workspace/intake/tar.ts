import type { Readable } from 'node:stream';
import { Parser, type ReadEntry } from 'tar';
import { AppError } from '../../errors.js';
import type { ChunkSource, TreeWriter } from './writer.js';

const FILE_TYPES = new Set(['File', 'OldFile', 'ContiguousFile']);

/**
 * Reads a tar stream with node-tar's Parser (headers, pax and GNU long names) and writes each
 * entry through the TreeWriter. Entries are handled one at a time on a promise chain; no
 * exception ever escapes a stream event (one thrown there crashes the process). On the first
 * failure the input is destroyed, the current entry is abandoned, and the returned promise
 * rejects only after the chain has settled, so nothing is written after the caller cleans up.
 */
export function extractTar(input: Readable, writer: TreeWriter): Promise<void> {
  return new Promise((resolve, reject) => {
    const parser = new Parser({ strict: true });
    const abort = new AbortController();
    let failure: unknown = null;
    let chain: Promise<void> = Promise.resolve();
    let finished = false;

    const settle = () => {
      if (finished) return;
      finished = true;
      // Wait until no entry is pending any more (entries may be chained while we wait).
      const drain = async (): Promise<void> => {
        let seen: Promise<void>;
        do {
          seen = chain;
          await seen.catch(() => undefined);
        } while (seen !== chain);
      };
      void drain().then(() => (failure === null ? resolve() : reject(failure)));
    };
    const fail = (err: unknown) => {
      if (failure !== null) return;
      // File-system errors pass as they are (ENOSPC on a full workspace is its quota, not a corrupt archive).
      failure = err instanceof AppError || (err as NodeJS.ErrnoException)?.syscall !== undefined ? err : corrupt(err);
      abort.abort();
      input.unpipe(parser);
      input.destroy();
      settle();
    };

    parser.on('entry', (entry: ReadEntry) => {
      if (failure !== null) {
        entry.resume();
        return;
      }
      chain = chain
        .then(() => {
          if (failure === null) return handle(entry, writer, abort.signal);
          entry.resume();
        })
        .catch(fail);
    });
    // node-tar cuts pax and GNU long names at a NUL; the raw metadata shows it, so refuse here
    // (a trailing NUL is the normal terminator of a GNU long name).
    parser.on('meta', (meta: string) => {
      if (meta.replace(/\0+$/, '').includes('\0')) {
        fail(new AppError('WORKSPACE_PATH_INVALID', { entry: meta.replace(/\0/g, '\\0').slice(0, 256), rule: 'nul_byte' }));
      }
    });
    parser.on('error', fail);
    parser.on('warn', (code: string, message: string) => fail(corrupt(new Error(`${code}: ${message}`))));
    // A tar is a sequence of 512-byte blocks: a partial block at the end is a truncated archive
    // (node-tar ignores it silently).
    let bytes = 0;
    input.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    parser.on('end', () => {
      if (bytes % 512 !== 0) fail(corrupt(new Error(`truncated: ${bytes} bytes is not a whole number of 512-byte blocks`)));
      settle();
    });
    input.on('error', fail);
    input.pipe(parser as unknown as NodeJS.WritableStream);
  });
}

const corrupt = (err: unknown) =>
  new AppError('ARCHIVE_CORRUPT', { format: 'tar', reason: err instanceof Error ? err.message : String(err) });

async function handle(entry: ReadEntry, writer: TreeWriter, signal: AbortSignal): Promise<void> {
  const path = entry.path;
  const type = entry.type;
  if (FILE_TYPES.has(type)) {
    await writer.file(path, entry.mode ?? 0o644, entryChunks(entry, signal));
  } else if (type === 'Directory') {
    entry.resume();
    await writer.dir(path, entry.mode ?? 0o755);
  } else if (type === 'SymbolicLink') {
    entry.resume();
    await writer.symlink(path, entry.linkpath ?? '');
  } else if (type === 'Link') {
    entry.resume();
    await writer.hardlink(path, entry.linkpath ?? '');
  } else {
    entry.resume();
    const rule = { CharacterDevice: 'character_device', BlockDevice: 'block_device', FIFO: 'fifo' }[type as string];
    writer.special(path, rule ?? `unsupported_type:${type}`);
  }
}

/** Feeds an entry's data to the writer, pausing the entry (and so the parser) while each write runs. */
function entryChunks(entry: ReadEntry, signal: AbortSignal): ChunkSource {
  return (write) =>
    new Promise<void>((resolve, reject) => {
      let pending: Promise<void> = Promise.resolve();
      let done = false;
      const finish = (err?: unknown) => {
        if (done) return;
        done = true;
        signal.removeEventListener('abort', onAbort);
        // Wait for the write in flight so the file handle is idle when the writer closes it.
        void pending.then(
          () => (err === undefined ? resolve() : reject(err)),
          (e: unknown) => reject(err ?? e),
        );
      };
      const onAbort = () => finish(new Error('aborted'));
      signal.addEventListener('abort', onAbort);
      entry.on('data', (chunk: Buffer) => {
        if (done) return;
        entry.pause();
        pending = pending.then(() => write(chunk));
        pending.then(
          () => {
            if (!done) entry.resume();
          },
          (err: unknown) => finish(err),
        );
      });
      entry.on('end', () => finish());
      entry.on('error', (err: unknown) => finish(err));
    });
}
