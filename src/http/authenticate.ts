import type { FastifyInstance, FastifyRequest } from 'fastify';
import { bearerKey, principalFor, type KeyDirectory } from '../auth/keys.js';
import { OPEN_ACCESS, type Principal } from '../auth/principal.js';
import { subprotocolKey } from '../auth/subprotocol.js';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who the request acts for (set before routing; OPEN_ACCESS on a server without keys). */
    principal: Principal;
  }
}

/** Routes anyone may call, with or without a key: liveness, readiness and the API document. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/openapi.json']);

export interface AuthenticationOptions {
  /**
   * Keys are needed even when none exists (then every request but OPEN_PATHS is 401): set on a
   * server listening beyond loopback, which must never fall open because its last key was revoked.
   */
  required?: boolean;
}

function isUpgrade(req: FastifyRequest): boolean {
  const u = req.headers.upgrade;
  return typeof u === 'string' && u.toLowerCase() === 'websocket';
}

/** The key a request presents: its Authorization header, or on a WebSocket upgrade its subprotocols. */
function presentedKey(req: FastifyRequest): string | null {
  return bearerKey(req.headers.authorization) ?? (isUpgrade(req) ? subprotocolKey(req.headers['sec-websocket-protocol']) : null);
}

/**
 * The web page and its assets (/ui, /ui/...) load without a key: a browser cannot send one on
 * navigation; the page then signs in and sends the key with every API call.
 */
export function isOpenPath(path: string): boolean {
  return OPEN_PATHS.has(path) || path === '/ui' || path.startsWith('/ui/');
}

/**
 * Authentication, as an onRequest hook after the Host and Origin checks: on a server with keys,
 * every route but OPEN_PATHS needs `Authorization: Bearer <key>` (or, on a WebSocket upgrade,
 * the subprotocols `sandboxshift.v1` and `bearer.<key>`) naming a known key, else 401
 * UNAUTHENTICATED (the same answer for a missing, malformed, unknown or revoked key). On a
 * server without keys every request acts as OPEN_ACCESS.
 */
export function registerAuthentication(app: FastifyInstance, keys: KeyDirectory, opts: AuthenticationOptions = {}): void {
  app.decorateRequest('principal', null as unknown as Principal);
  app.addHook('onRequest', async (req: FastifyRequest) => {
    if (!opts.required && !keys.hasKeys()) {
      req.principal = OPEN_ACCESS;
      return;
    }
    const path = req.url.split('?', 1)[0]!;
    const principal = principalFor(keys, presentedKey(req));
    if (principal) {
      req.principal = principal;
      return;
    }
    if (isOpenPath(path)) {
      req.principal = { ...OPEN_ACCESS, role: 'user' };
      return;
    }
    throw new AppError('UNAUTHENTICATED');
  });
}

/**
 * A route option (`preHandler: requireAdmin`) for routes only admins may call: on a server with
 * keys the request's key must have role `admin`, else 403 ADMIN_REQUIRED; a server without keys
 * lets every caller through (each acts as OPEN_ACCESS, an admin).
 */
export async function requireAdmin(req: FastifyRequest): Promise<void> {
  if (req.principal?.role !== 'admin') throw new AppError('ADMIN_REQUIRED', { role: req.principal?.role ?? null });
}
