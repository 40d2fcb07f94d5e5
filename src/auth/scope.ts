import { AppError } from '../errors.js';
import type { Principal } from './principal.js';

/** The form of a tenant name (config `auth.keys[].tenant`, `?tenant=`, `tenants.overrides`). */
export const TENANT_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Whether the principal may see work of `tenant`: its own, or any for an admin. */
export function canSee(principal: Principal, tenant: string): boolean {
  return principal.role === 'admin' || principal.tenant === tenant;
}

/**
 * The tenant a list is filtered by: an admin sees every tenant unless it asks for one with
 * `?tenant=`; a user sees its own tenant only, and naming another one is 403 TENANT_FORBIDDEN
 * (rather than an empty list that would read as "that tenant has nothing").
 */
export function listTenant(principal: Principal, requested: string | undefined): string | undefined {
  if (principal.role === 'admin') return requested;
  if (requested !== undefined && requested !== principal.tenant) {
    throw new AppError('TENANT_FORBIDDEN', { tenant: requested });
  }
  return principal.tenant;
}
