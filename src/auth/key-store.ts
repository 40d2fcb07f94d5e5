import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { hashKey, type KeyDirectory, type KnownKey } from './keys.js';
import type { Role } from './principal.js';

/** A key of the database as listed: never the key, only what it is for and when it was used. */
export interface StoredKey {
  id: string;
  tenant: string;
  role: Role;
  createdAt: string;
  /** When a request last presented it (written at most once per LAST_USED_EVERY_MS), or null. */
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** What the key store tells the audit log. */
export type KeyEvent = { event: 'key.created' | 'key.revoked'; keyId: string; tenant: string; role: Role };
export type KeyEventSink = (e: KeyEvent) => void;

/** `last used` is written at most this often per key, so requests do not each cost a write. */
export const LAST_USED_EVERY_MS = 60_000;

interface Row {
  id: string;
  tenant: string;
  role: Role;
  sha256: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    sha256 TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
  );
`;

/**
 * API keys in the server's SQLite database (table `api_keys`), shared by the running server and
 * the `sandboxshift keys` commands: each opens its own connection to the same file (WAL, so a
 * reader never waits for the other's writer). The server looks keys up with a prepared statement
 * on every request, so a key created or revoked by the CLI counts from the next request on.
 */
export class KeyStore implements KeyDirectory {
  private readonly db: Database.Database;
  private readonly byHash: Database.Statement<[string], Row>;
  private readonly anyActive: Database.Statement<[], { n: number }>;
  private readonly touchStmt: Database.Statement<[string, string]>;
  /** When this process last wrote each key's last-used time (ms since the epoch). */
  private readonly touched = new Map<string, number>();

  private constructor(
    db: Database.Database,
    private readonly now: () => number,
    private readonly onEvent: KeyEventSink | null,
    /** Whether close() closes the connection (one opened here) or leaves it (a shared one). */
    private readonly owned: boolean,
  ) {
    this.db = db;
    this.db.pragma('journal_mode = WAL');
    this.db.exec(SCHEMA);
    this.byHash = this.db.prepare('SELECT * FROM api_keys WHERE sha256 = ? AND revoked_at IS NULL');
    this.anyActive = this.db.prepare('SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL) AS n');
    this.touchStmt = this.db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?');
  }

  /**
   * The key table of the database file at `path`; the file (and its directory) are created
   * unless `create` is false, in which case a missing file gives null.
   */
  static open(path: string, opts: { create?: boolean; now?: () => number; onEvent?: KeyEventSink } = {}): KeyStore | null {
    if (opts.create === false && !existsSync(path)) return null;
    mkdirSync(dirname(path), { recursive: true, mode: 0o711 });
    // better-sqlite3 waits up to `timeout` ms for the other process's write lock.
    return new KeyStore(new Database(path, { timeout: 5000 }), opts.now ?? Date.now, opts.onEvent ?? null, true);
  }

  /** The key table on a connection someone else owns (the server's store): close() leaves it open. */
  static on(db: Database.Database, opts: { now?: () => number; onEvent?: KeyEventSink } = {}): KeyStore {
    return new KeyStore(db, opts.now ?? Date.now, opts.onEvent ?? null, false);
  }

  hasKeys(): boolean {
    return this.anyActive.get()!.n === 1;
  }

  lookup(sha256: string): KnownKey | null {
    const row = this.byHash.get(sha256);
    if (!row || !timingSafeEqual(Buffer.from(row.sha256, 'hex'), Buffer.from(sha256, 'hex'))) return null;
    this.noteUse(row.id);
    return { id: row.id, tenant: row.tenant, role: row.role, sha256: row.sha256 };
  }

  /** A new key: the key text (returned once, never stored) and its record. */
  create(tenant: string, role: Role, takenIds: ReadonlySet<string> = new Set()): { key: string; record: StoredKey } {
    const key = `ssk_${randomBytes(32).toString('base64url')}`;
    let id: string;
    do id = `key_${randomBytes(8).toString('hex')}`;
    while (takenIds.has(id));
    const createdAt = new Date(this.now()).toISOString();
    this.db
      .prepare('INSERT INTO api_keys (id, tenant, role, sha256, created_at) VALUES (?, ?, ?, ?, ?)')
      .run(id, tenant, role, hashKey(key), createdAt);
    this.onEvent?.({ event: 'key.created', keyId: id, tenant, role });
    return { key, record: { id, tenant, role, createdAt, lastUsedAt: null, revokedAt: null } };
  }

  /** Every key, oldest first; revoked ones only with `revoked`. */
  list(opts: { revoked?: boolean } = {}): StoredKey[] {
    const rows = this.db
      .prepare(`SELECT * FROM api_keys ${opts.revoked ? '' : 'WHERE revoked_at IS NULL'} ORDER BY created_at, id`)
      .all() as Row[];
    return rows.map(toStored);
  }

  get(id: string): StoredKey | null {
    const row = this.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as Row | undefined;
    return row ? toStored(row) : null;
  }

  /**
   * Revokes a key: from the next request on it reads as unknown. The row stays (the id keeps
   * naming the same key in task records and the audit log). 'unknown' when no key has this id,
   * 'already' when it was revoked before.
   */
  revoke(id: string): 'revoked' | 'already' | 'unknown' {
    const row = this.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as Row | undefined;
    if (!row) return 'unknown';
    if (row.revoked_at !== null) return 'already';
    this.db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(new Date(this.now()).toISOString(), id);
    this.onEvent?.({ event: 'key.revoked', keyId: id, tenant: row.tenant, role: row.role });
    return 'revoked';
  }

  close(): void {
    if (this.owned) this.db.close();
  }

  /** Records a use, writing only when this process has not written one for the key recently. */
  private noteUse(id: string): void {
    const now = this.now();
    const last = this.touched.get(id);
    if (last !== undefined && now - last < LAST_USED_EVERY_MS) return;
    this.touched.set(id, now);
    try {
      this.touchStmt.run(new Date(now).toISOString(), id);
    } catch {
      // A busy database (the CLI writing at this moment) costs one last-used update, not the request.
      this.touched.delete(id);
    }
  }
}

function toStored(r: Row): StoredKey {
  return { id: r.id, tenant: r.tenant, role: r.role, createdAt: r.created_at, lastUsedAt: r.last_used_at, revokedAt: r.revoked_at };
}
