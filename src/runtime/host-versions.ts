import { execFile } from 'node:child_process';
import { constants, promises as fs } from 'node:fs';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { changelogTopVersion, cveIds, debianPackageVersion } from './versions.js';

const run = promisify(execFile);
const gunzipAsync = promisify(gunzip);

/** Largest compressed and uncompressed changelog read; Debian's runc changelog is a few KiB. */
const CHANGELOG_MAX_BYTES = 1 << 20;

/**
 * CVE ids named by the Debian changelog of the runc package the engine reports, or null when the
 * package is not a Debian build or the changelog's top entry is not that package's version (the
 * file then describes some other runc than the one in use).
 */
export async function debianChangelogCves(pkg: string | null, path = '/usr/share/doc/runc/changelog.Debian.gz'): Promise<string[] | null> {
  const version = pkg ? debianPackageVersion(pkg) : null;
  if (!version) return null;
  try {
    const stat = await fs.stat(path);
    if (!stat.isFile() || stat.size > CHANGELOG_MAX_BYTES) return null;
    const text = (await gunzipAsync(await fs.readFile(path), { maxOutputLength: CHANGELOG_MAX_BYTES })).toString('utf8');
    return changelogTopVersion(text) === version ? cveIds(text) : null;
  } catch {
    return null;
  }
}

/** `runsc --version`'s version ("0.0~20221219.0"), or null when the binary is absent or does not answer in 5 s. */
export async function runscVersion(path: string | null): Promise<string | null> {
  if (!path) return null;
  try {
    await fs.access(path, constants.X_OK);
    const { stdout } = await run(path, ['--version'], { timeout: 5_000, maxBuffer: 64 * 1024, env: {} });
    const m = /runsc version (\S{1,100})/.exec(stdout);
    return m ? m[1]! : stdout.split('\n')[0]!.trim().slice(0, 100) || null;
  } catch {
    return null;
  }
}
