import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The install directory (holds package.json and deploy/), found from this module's location. */
export function installDir(start = dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'deploy'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`cannot find the SandboxShift install directory above ${start}`);
}

export function fromInstall(path: string): string {
  return isAbsolute(path) ? path : resolve(installDir(), path);
}
