import { createHash, timingSafeEqual } from 'node:crypto';
import type { Principal, Role } from './principal.js';

/** An API key as presented: `ssk_` and base64url. */
export const KEY_PATTERN = /^ssk_[A-Za-z0-9_-]{16,256}$/;

/** The stored form of a key: hex SHA-256 of the whole key text. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A key the server knows: never the key itself, only its hash. */
export interface KnownKey {
  id: string;
  tenant: string;
  role: Role;
  sha256: string;
}

/** Where keys are looked up. Lookups happen on every request, so a revoked key stops at once. */
export interface KeyDirectory {
  /** True when at least one key exists (a server without keys is open on loopback only). */
  hasKeys(): boolean;
  /** The key with this hash, or null (unknown and revoked keys read alike). */
  lookup(sha256: string): KnownKey | null;
}

/** Keys listed in the configuration (`auth.keys`). */
export class ConfigKeys implements KeyDirectory {
  private readonly byHash: ReadonlyMap<string, KnownKey>;

  constructor(keys: readonly KnownKey[]) {
    this.byHash = new Map(keys.map((k) => [k.sha256, k]));
  }

  hasKeys(): boolean {
    return this.byHash.size > 0;
  }

  lookup(sha256: string): KnownKey | null {
    // The map lookup itself is by hash, which an attacker cannot steer towards a stored hash.
    const k = this.byHash.get(sha256);
    return k && timingSafeEqual(Buffer.from(k.sha256, 'hex'), Buffer.from(sha256, 'hex')) ? k : null;
  }
}

/** The key of an `Authorization: Bearer <key>` header, or null when there is none or it is malformed. */
export function bearerKey(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^Bearer +(\S+) *$/i.exec(header);
  return m && KEY_PATTERN.test(m[1]!) ? m[1]! : null;
}

/** The principal a presented key stands for, or null. */
export function principalFor(directory: KeyDirectory, key: string | null): Principal | null {
  if (key === null) return null;
  const k = directory.lookup(hashKey(key));
  return k ? { tenant: k.tenant, keyId: k.id, role: k.role } : null;
}
