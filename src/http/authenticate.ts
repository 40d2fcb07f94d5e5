import type { FastifyInstance, FastifyRequest } from 'fastify';
import { bearerKey, principalFor, type KeyDirectory } from '../auth/keys.js';
import { OPEN_ACCESS, type Principal } from '../auth/principal.js';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who the request acts for (set before routing; OPEN_ACCESS on a server without keys). */
    principal: Principal;
  }
}

/** Routes anyone may call, with or without a key: liveness, readiness and the API document. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/openapi.json']);

/**
 * Authentication, as an onRequest hook after the Host and Origin checks: on a server with keys,
 * every route but OPEN_PATHS needs `Authorization: Bearer <key>` naming a known key, else 401
 * UNAUTHENTICATED (the same answer for a missing, malformed, unknown or revoked key). On a
 * server without keys every request acts as OPEN_ACCESS.
 */
export function registerAuthentication(app: FastifyInstance, keys: KeyDirectory): void {
  app.decorateRequest('principal', null as unknown as Principal);
  app.addHook('onRequest', async (req: FastifyRequest) => {
    if (!keys.hasKeys()) {
      req.principal = OPEN_ACCESS;
      return;
    }
    const path = req.url.split('?', 1)[0]!;
    const principal = principalFor(keys, bearerKey(req.headers.authorization));
    if (principal) {
      req.principal = principal;
      return;
    }
    if (OPEN_PATHS.has(path)) {
      req.principal = { ...OPEN_ACCESS, role: 'user' };
      return;
    }
    throw new AppError('UNAUTHENTICATED');
  });
}
