import { createHash } from 'node:crypto';

/** The prevHash of the first record of a chain. */
export const GENESIS_HASH = '0'.repeat(64);

/** A value that can be written to the audit log (JSON without undefined). */
export type AuditValue = string | number | boolean | null | AuditValue[] | { [key: string]: AuditValue };

/** What a caller records: the event, who it concerns, and the event's own fields. */
export interface AuditEntry {
  /** Dotted event name: `task.submitted`, `egress.decision`, `key.created`, ... */
  event: string;
  /** The tenant the event concerns (null: none, e.g. an unauthenticated request or start-up). */
  tenant: string | null;
  /** The API key that acted (null: none, or a server without keys). */
  keyId: string | null;
  [field: string]: AuditValue;
}

/** One line of the audit log. */
export interface AuditRecord extends AuditEntry {
  seq: number;
  /** ISO 8601, UTC. */
  time: string;
  /** The `hash` of the record before this one (GENESIS_HASH for seq 1). */
  prevHash: string;
  /** Hex SHA-256 of the canonical JSON of every other field of this record (prevHash included). */
  hash: string;
}

/** Fields the log sets itself; an entry's own fields of these names are replaced. */
export const RESERVED = ['seq', 'time', 'prevHash', 'hash'] as const;

/** JSON with object keys sorted at every level, no white space: the form that is hashed and written. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

/** The hash a record must carry: over every field but `hash` itself. */
export function recordHash(record: Readonly<Record<string, unknown>>): string {
  const { hash: _hash, ...rest } = record;
  return createHash('sha256').update(canonicalJson(rest), 'utf8').digest('hex');
}

/** Builds the next record of a chain from an entry. */
export function sealRecord(entry: AuditEntry, seq: number, prevHash: string, time: Date): AuditRecord {
  const body: Record<string, unknown> = { ...entry, seq, time: time.toISOString(), prevHash };
  delete body.hash;
  return { ...body, hash: recordHash(body) } as AuditRecord;
}

/** A parsed line that looks like a record (its hash is not checked here). */
export function asRecord(value: unknown): AuditRecord | null {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return null;
  const r = value as Record<string, unknown>;
  const ok =
    Number.isSafeInteger(r.seq) &&
    (r.seq as number) >= 1 &&
    typeof r.time === 'string' &&
    typeof r.event === 'string' &&
    typeof r.prevHash === 'string' &&
    typeof r.hash === 'string' &&
    (r.tenant === null || typeof r.tenant === 'string') &&
    (r.keyId === null || typeof r.keyId === 'string');
  return ok ? (r as AuditRecord) : null;
}

/** Parses one line of the log, or null when it is not a record. */
export function parseRecordLine(line: string): AuditRecord | null {
  try {
    return asRecord(JSON.parse(line));
  } catch {
    return null;
  }
}
