import type { Socket } from 'node:net';
import type { FifoWriter } from './stdin-fifo.js';

/** Where a running sandbox's stdin goes: the engine's attach connection or the task's pipe. */
export interface StdinSink {
  /** False when this stdin was closed. */
  write(data: Buffer): boolean;
  /** EOF for the task, after what was written. */
  end(): void;
  /** The server leaves the task running: its stdin must stay open for the next server. */
  detach(): Promise<void>;
  /** The container has exited. */
  close(): void;
}

/** Stdin over a hijacked attach (stdin only): EOF is a half-close; conmon closes the task's stdin when the connection dies. */
export function attachSink(sock: Socket): StdinSink {
  sock.on('error', () => undefined);
  sock.on('data', () => undefined); // an attach with stdin only carries nothing back
  return {
    write: (data) => {
      if (sock.destroyed) return false;
      sock.write(data);
      return true;
    },
    end: () => {
      if (!sock.destroyed) sock.end();
    },
    // Destroyed, not ended: a half-close would be EOF on the task's stdin.
    detach: async () => void sock.destroy(),
    close: () => void sock.destroy(),
  };
}

/** Stdin through the task's pipe: leaving gives the queue a bounded time to reach the pipe, then closes only this server's end. */
export function fifoSink(writer: FifoWriter): StdinSink {
  return {
    write: (data) => writer.write(data),
    end: () => writer.end(),
    detach: async () => {
      await writer.flush();
      writer.close();
    },
    close: () => writer.close(),
  };
}
