import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fstatSync, linkSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';

/**
 * Per-task credentials of the egress proxy's TCP listener. They are derived, not stored: the user
 * is the task id in lower case, the token HMAC-SHA256(server key, task id) in hex. A restarted
 * server with the same key therefore accepts the credentials of the tasks it re-opens; a task the
 * proxy has not opened (or has closed) is refused whatever it sends.
 */

const KEY_BYTES = 32;
/** Largest Proxy-Authorization value looked at (a Basic user:token is far below it). */
const MAX_AUTHORIZATION = 1024;

export interface TaskCredential {
  user: string;
  /** 64 hex digits. */
  token: string;
}

export function deriveCredential(key: Buffer, taskId: string): TaskCredential {
  return { user: taskId.toLowerCase(), token: createHmac('sha256', key).update(taskId, 'utf8').digest('hex') };
}

/** Constant-time comparison of a presented token with the expected one. */
export function tokenMatches(expected: string, presented: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(presented, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** `http://<user>:<token>@host:port` from the advertised `http://host:port`. */
export function credentialUrl(advertiseUrl: string, c: TaskCredential): string {
  const u = new URL(advertiseUrl);
  // Task ids are [A-Za-z0-9_-]: the user needs no percent-encoding.
  return `http://${c.user}:${c.token}@${u.host}`;
}

export type PresentedCredential =
  | { kind: 'missing' }
  | { kind: 'malformed'; why: string }
  | { kind: 'basic'; user: string; token: string };

/** What a request head's Proxy-Authorization fields present (exactly one `Basic` field expected). */
export function presentedCredential(headers: readonly (readonly [string, string])[]): PresentedCredential {
  const fields = headers.filter(([n]) => n.toLowerCase() === 'proxy-authorization').map(([, v]) => v);
  if (fields.length === 0) return { kind: 'missing' };
  if (fields.length > 1) return { kind: 'malformed', why: 'more than one Proxy-Authorization field' };
  const value = fields[0]!;
  if (value.length > MAX_AUTHORIZATION) return { kind: 'malformed', why: 'Proxy-Authorization is too long' };
  const m = /^basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(value);
  if (!m) return { kind: 'malformed', why: 'Proxy-Authorization must be Basic <base64 of user:token>' };
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon <= 0) return { kind: 'malformed', why: 'Proxy-Authorization must carry user:token' };
  return { kind: 'basic', user: decoded.slice(0, colon), token: decoded.slice(colon + 1) };
}

/**
 * The server's credential key: read, or created (32 random bytes, mode 0600) the first time. The
 * file is written under a temporary name and linked into place, so a crash never leaves a short
 * key and two starts never pick different keys.
 */
export function loadCredentialKey(path: string): Buffer {
  const tmp = `${path}.${process.pid}.tmp`;
  let fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, randomBytes(KEY_BYTES));
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || (st.mode & 0o077) !== 0) throw new Error(`the egress credential key ${path} must be a regular file of mode 0600`);
    const key = readFileSync(fd);
    if (key.length !== KEY_BYTES) throw new Error(`the egress credential key ${path} is not ${KEY_BYTES} bytes`);
    return key;
  } finally {
    closeSync(fd);
  }
}
