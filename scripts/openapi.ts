/**
 * Writes openapi.yaml at the repository root from openapiDocument().
 * `npm run build && npm run openapi` (runs as dist/scripts/openapi.js).
 * `--check` writes nothing and exits 1 when openapi.yaml is out of date.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openapiYaml } from '../src/http/openapi.js';

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above this script');
    dir = up;
  }
  return dir;
}

const file = join(repoRoot(), 'openapi.yaml');
const text = openapiYaml();
if (process.argv.includes('--check')) {
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (current !== text) {
    process.stderr.write(`${file} is out of date: run \`npm run build && npm run openapi\`\n`);
    process.exit(1);
  }
  process.stdout.write(`${file} is up to date\n`);
} else {
  writeFileSync(file, text);
  process.stdout.write(`wrote ${file}\n`);
}
