import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';

/**
 * Bounds the time a client has to send a whole request body (requests.bodyTimeoutSeconds), for
 * every route: JSON, archives and multipart alike. A body that is still incomplete when the time
 * is up is answered 408 BODY_TIMEOUT (with Connection: close), and then the request stream is
 * destroyed, so whatever was reading it (an archive intake, a multipart parser, the JSON parser)
 * fails and removes what it had started. Requests without a body are not timed.
 */
export function registerBodyDeadline(app: FastifyInstance, seconds: number): void {
  app.addHook('onRequest', (req, reply, done) => {
    const raw = req.raw;
    const declared = Number(raw.headers['content-length'] ?? 0);
    if (raw.headers['transfer-encoding'] === undefined && !(declared > 0)) return done();
    const timer = setTimeout(() => {
      if (raw.complete || raw.destroyed) return;
      const err = new AppError('BODY_TIMEOUT', { limitSeconds: seconds, bound: 'requests.bodyTimeoutSeconds' });
      req.log.warn({ limitSeconds: seconds }, 'request body not received in time');
      if (reply.sent || reply.raw.headersSent) {
        raw.destroy(err);
        return;
      }
      reply.hijack();
      const payload = JSON.stringify(err.toJSON());
      reply.raw.writeHead(err.status, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': String(Buffer.byteLength(payload)),
        connection: 'close',
      });
      reply.raw.end(payload, () => raw.destroy(err));
    }, seconds * 1000);
    const clear = () => clearTimeout(timer);
    raw.once('end', clear);
    raw.once('close', clear);
    reply.raw.once('close', clear);
    done();
  });
}
