import type { Config } from '../config/schema.js';

export interface TenantLimits {
  maxRunning: number;
  maxQueued: number;
  workspaceBytes: number;
  requestsPerMinute: number;
}

/** A tenant's limits: its `tenants.overrides` entry over `tenants.defaults`. */
export function tenantLimits(config: Pick<Readonly<Config>, 'tenants'>, tenant: string): TenantLimits {
  const over = Object.hasOwn(config.tenants.overrides, tenant) ? config.tenants.overrides[tenant]! : {};
  const d = config.tenants.defaults;
  return {
    maxRunning: over.maxRunning ?? d.maxRunning,
    maxQueued: over.maxQueued ?? d.maxQueued,
    workspaceBytes: over.workspaceBytes ?? d.workspaceBytes,
    requestsPerMinute: over.requestsPerMinute ?? d.requestsPerMinute,
  };
}
