/**
 * Bundles the web page (ui/) into dist/ui: ui/src/main.ts with its dependencies (@xterm/xterm)
 * into app.js, ui/app.css with xterm's stylesheet into app.css, and ui/index.html copied.
 * Run by `npm run build` (as dist/scripts/build-ui.js); the browser tests call buildUi() too.
 */
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export function repoRoot(start = dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above this script');
    dir = up;
  }
  return dir;
}

export async function buildUi(root = repoRoot(), outDir = join(root, 'dist', 'ui')): Promise<string> {
  mkdirSync(outDir, { recursive: true });
  await build({
    absWorkingDir: root,
    entryPoints: { app: 'ui/src/main.ts' },
    outdir: outDir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    sourcemap: 'linked',
    legalComments: 'linked',
    logLevel: 'warning',
  });
  await build({
    absWorkingDir: root,
    entryPoints: { app: 'ui/app.css' },
    outdir: outDir,
    bundle: true,
    minify: true,
    logLevel: 'warning',
  });
  copyFileSync(join(root, 'ui', 'index.html'), join(outDir, 'index.html'));
  return outDir;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await buildUi();
  process.stdout.write(`wrote ${out}\n`);
}
