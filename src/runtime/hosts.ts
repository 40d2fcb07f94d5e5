import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SANDBOX_HOSTNAME } from './spec.js';

/** The /etc/hosts of every task: loopback under `localhost` and the sandbox's own name, nothing else. */
export function sandboxHostsContent(): string {
  return `127.0.0.1\tlocalhost ${SANDBOX_HOSTNAME}\n::1\tlocalhost ${SANDBOX_HOSTNAME}\n`;
}

/** Writes the hosts file under `dir` (created if needed) and returns its path; mounted read-only. */
export function writeSandboxHosts(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const path = join(dir, 'hosts');
  writeFileSync(path, sandboxHostsContent(), { mode: 0o644 });
  return path;
}
