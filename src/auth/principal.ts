/** Who a request acts for: the tenant whose tasks and workspaces it sees, and the key it used. */
export type Role = 'admin' | 'user';

export interface Principal {
  tenant: string;
  /** The API key's id; null on a server without keys. */
  keyId: string | null;
  /** `admin` sees every tenant's work; `user` only its own tenant's. */
  role: Role;
}

/** The tenant of work submitted to a server without keys (and of records older than tenants). */
export const DEFAULT_TENANT = 'default';

/** The caller on a server without keys: the default tenant, seeing everything. */
export const OPEN_ACCESS: Readonly<Principal> = Object.freeze({ tenant: DEFAULT_TENANT, keyId: null, role: 'admin' });
