import type { FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';

/**
 * preHandler of admin-only routes: a request whose key has the role `user` is 403 ADMIN_REQUIRED.
 * On a server without keys every request acts as an admin (loopback only).
 */
export async function adminOnly(req: FastifyRequest): Promise<void> {
  if (req.principal.role !== 'admin') throw new AppError('ADMIN_REQUIRED', { role: req.principal.role });
}
