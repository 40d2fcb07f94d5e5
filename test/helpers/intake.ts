import Database from 'better-sqlite3';
import { existsSync, lstatSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { api } from './client.js';

/** POSTs raw bytes (an archive) to the server and returns status and parsed JSON. */
export async function upload(base: string, body: Buffer, contentType: string, path = '/v1/workspaces') {
  const { status, json, text } = await api(base, 'POST', path, body, { 'content-type': contentType });
  return { status, json, text };
}

/** Workspace records in the server's real SQLite file. */
export function workspaceRecords(dataDir: string): number {
  const db = new Database(join(dataDir, 'sandboxshift.db'), { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT COUNT(*) AS n FROM workspaces').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** What is on disk under the data directory's workspaces and tmp folders. */
export function leftovers(dataDir: string): string[] {
  const out: string[] = [];
  for (const d of ['workspaces', 'tmp']) {
    const p = join(dataDir, d);
    if (existsSync(p)) out.push(...readdirSync(p).map((n) => `${d}/${n}`));
  }
  return out;
}

/** A directory outside the data directory that hostile entries aim at; it must stay empty. */
export function canary(): { dir: string; entries(): string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-canary-'));
  return { dir, entries: () => readdirSync(dir) };
}

/** lstat of a path, or null when absent. */
export function lstatOrNull(p: string) {
  try {
    return lstatSync(p);
  } catch {
    return null;
  }
}
