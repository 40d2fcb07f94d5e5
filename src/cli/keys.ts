import { AuditLog } from '../audit/log.js';
import { KeyStore, type KeyEventSink, type StoredKey } from '../auth/key-store.js';
import type { Role } from '../auth/principal.js';
import { databaseFile } from '../auth/server-keys.js';
import { TENANT_NAME, TENANT_NAME_RULE, type Config } from '../config/schema.js';
import { EXIT } from './exit-codes.js';

type Out = (s: string) => void;

export interface KeysIo {
  out: Out;
  err: Out;
  /** Where key creations and revocations are reported for the audit log. */
  onEvent?: KeyEventSink;
}

/**
 * The audit log's side of the keys commands: `key.created` and `key.revoked`, appended to the
 * server's audit log (the same chain the running server writes, under its lock file). A record
 * that cannot be written is said on stderr; the key change itself stands.
 */
export function auditKeyEvents(config: Readonly<Config>, err: Out): KeyEventSink {
  return (e) => {
    try {
      AuditLog.forConfig(config).append({ event: e.event, tenant: e.tenant, keyId: e.keyId, role: e.role });
    } catch (error) {
      err(`sandboxshift: warning: ${e.event} ${e.keyId} could not be written to the audit log: ${(error as Error).message}\n`);
    }
  };
}

/** A key as `keys list` shows it: from the database, or (hashes only) from `auth.keys`. */
export interface ListedKey extends Omit<StoredKey, 'createdAt'> {
  source: 'database' | 'config';
  createdAt: string | null;
}

function withStore<T>(config: Readonly<Config>, io: KeysIo, fn: (store: KeyStore | null) => T, create = true): T {
  const store = KeyStore.open(databaseFile(config), { onEvent: io.onEvent, create });
  try {
    return fn(store);
  } finally {
    store?.close();
  }
}

/**
 * `keys create --tenant NAME [--role admin]`: a new key in the server's database. The key is
 * printed once, alone on the last line of stdout; only its SHA-256 is stored.
 */
export function keysCreate(config: Readonly<Config>, opts: { tenant: string; role?: Role }, io: KeysIo): number {
  if (!TENANT_NAME.test(opts.tenant)) {
    io.err(`sandboxshift: --tenant: ${TENANT_NAME_RULE}\n`);
    return EXIT.USAGE;
  }
  const role = opts.role ?? 'user';
  const { key, record } = withStore(config, io, (store) => store!.create(opts.tenant, role, new Set(config.auth.keys.map((k) => k.id))));
  io.out(`created ${record.id} for tenant ${record.tenant}, role ${record.role}; the key below is shown only this once:\n`);
  io.out(`${key}\n`);
  return 0;
}

/** Every key the server accepts (configuration first), never the key itself. */
export function listedKeys(config: Readonly<Config>, store: KeyStore | null, revoked: boolean): ListedKey[] {
  const fromConfig: ListedKey[] = config.auth.keys.map((k) => ({ id: k.id, tenant: k.tenant, role: k.role, source: 'config', createdAt: null, lastUsedAt: null, revokedAt: null }));
  const fromDb: ListedKey[] = (store?.list({ revoked }) ?? []).map((k) => ({ ...k, source: 'database' }));
  return [...fromConfig, ...fromDb];
}

/** `keys list [--all] [--json]`: id, tenant, role, created, last used (and revoked, with --all). */
export function keysList(config: Readonly<Config>, opts: { all?: boolean; json?: boolean }, io: KeysIo): number {
  // Listing creates nothing: no database yet means no database keys.
  const keys = withStore(config, io, (store) => listedKeys(config, store, Boolean(opts.all)), false);
  if (opts.json) {
    io.out(`${JSON.stringify({ keys })}\n`);
    return 0;
  }
  const rows = [['ID', 'TENANT', 'ROLE', 'SOURCE', 'CREATED', 'LAST USED', ...(opts.all ? ['REVOKED'] : [])]];
  for (const k of keys) {
    rows.push([k.id, k.tenant, k.role, k.source, k.createdAt ?? '-', k.lastUsedAt ?? '-', ...(opts.all ? [k.revokedAt ?? '-'] : [])]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.out(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}\n`);
  return 0;
}

/** `keys revoke ID`: from the next request on, a running server answers the key 401. */
export function keysRevoke(config: Readonly<Config>, id: string, io: KeysIo): number {
  if (config.auth.keys.some((k) => k.id === id)) {
    io.err(`sandboxshift: ${id} comes from the configuration (auth.keys): remove it there and restart the server\n`);
    return 1;
  }
  const result = withStore(config, io, (store) => store?.revoke(id) ?? 'unknown', false);
  if (result === 'unknown') {
    io.err(`sandboxshift: no key with id ${id}\n`);
    return 1;
  }
  io.out(result === 'already' ? `${id} was already revoked\n` : `${id} revoked\n`);
  return 0;
}
