import type { LogCursor } from './cursor.js';
import type { TaskLog } from './tasklog.js';

/** Resolves on the log's next append, or when `signal` aborts. */
function nextAppend(log: TaskLog, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      log.off('append', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    log.on('append', done);
    signal.addEventListener('abort', done);
  });
}

/**
 * Batches of frame lines read from disk through `cursor`. With `follow`, waits for new frames
 * until the exit frame has been read (or `signal` aborts); without, stops once caught up.
 * Pull-based: a consumer that does not pull costs a file position, not memory. Closes the cursor.
 */
export async function* readFrames(log: TaskLog, cursor: LogCursor, follow: boolean, signal: AbortSignal): AsyncGenerator<string[]> {
  try {
    while (!signal.aborted) {
      // read() and the subscription below run in one synchronous step, so no append is missed.
      const lines = cursor.read();
      if (lines.length) {
        yield lines;
        continue;
      }
      if (cursor.done || !follow || log.finished) return;
      await nextAppend(log, signal);
    }
  } finally {
    cursor.close();
  }
}
