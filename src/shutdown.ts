import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Services } from './services.js';

/**
 * SIGTERM/SIGINT: new work is refused (503 SHUTTING_DOWN), streams send the frames they have and
 * close with 1001, running tasks are left running for the next start (shutdown.leaveRunning) or
 * stopped, then the process exits 0. A second signal exits at once.
 */
export function installShutdown(app: FastifyInstance, services: Services, log: Logger, exit: (code: number) => never = process.exit): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      exit(130);
    }
    stopping = true;
    log.info({ signal, leaveRunning: services.config.shutdown.leaveRunning }, 'shutting down');
    try {
      await services.drain();
      // Streams send the frames their task logs hold, then close with 1001 (bounded wait).
      const ws = (app as unknown as { websocketServer?: { clients: Set<unknown> } }).websocketServer;
      for (let i = 0; i < 40 && ws && ws.clients.size > 0; i++) await new Promise((r) => setTimeout(r, 50));
      await app.close();
      await services.close();
    } catch (err) {
      log.error({ err }, 'shutdown failed');
      exit(1);
    }
    exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}
