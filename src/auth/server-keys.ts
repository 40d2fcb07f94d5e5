import { join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { DATABASE_FILE } from '../store/sqlite.js';
import { KeyStore } from './key-store.js';

/** The database file a server with this configuration uses, where its keys live. */
export function databaseFile(config: Readonly<Config>, cwd: string = process.cwd()): string {
  return join(resolve(cwd, config.dataDir), DATABASE_FILE);
}

/** Whether a server with this configuration has any key, without creating its database. */
export function hasAnyKey(config: Readonly<Config>, cwd?: string): boolean {
  if (config.auth.keys.length > 0) return true;
  const store = KeyStore.open(databaseFile(config, cwd), { create: false });
  try {
    return store?.hasKeys() ?? false;
  } finally {
    store?.close();
  }
}
