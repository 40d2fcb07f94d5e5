/**
 * Runtime versions and the runc fix rule. A runc older than the fixes for the November 2025
 * container-escape CVEs (runc 1.2.8, 1.3.3, 1.4.0-rc.3) is a warning in /readyz and the start-up
 * log, unless its distribution package's changelog names all three CVEs (a backport).
 */

import type { EngineVersions } from './engine.js';

export const RUNC_CVES = ['CVE-2025-31133', 'CVE-2025-52565', 'CVE-2025-52881'] as const;

export const RUNC_MITIGATION =
  'upgrade runc to 1.2.8, 1.3.3, 1.4.0-rc.3 or later, or to a distribution build that carries the fixes. ' +
  'Or run untrusted tasks under gVisor (runsc), which contains these escapes: engine.isolation: gvisor, or ' +
  'engine.allowedIsolation listing gvisor and tasks asking for "isolation": "gvisor"';

export interface RuncVersion {
  major: number;
  minor: number;
  patch: number;
  /** Release candidate number; null for a release. */
  rc: number | null;
  /** Any other pre-release tag (such as "dev"): sorts before every rc and the release. */
  pre: string | null;
}

/** What the engine reports about the OCI runtime it runs containers with. */
export interface RuncReport {
  /** Version text as the engine reports it (such as "runc version 1.1.5+ds1 …"). */
  text: string;
  /** Distribution package (such as "runc_1.1.5+ds1-1+deb12u1_amd64"), when the engine names one. */
  package: string | null;
  /**
   * CVE ids the package's changelog names, when that changelog's top entry is the installed
   * package version; null when there is no such changelog.
   */
  packageCves: readonly string[] | null;
}

/** Parses the first x.y.z[-rc.N|-tag] in `text` (build metadata after "+" is ignored). */
export function parseRuncVersion(text: string): RuncVersion | null {
  const m = /(?:^|[^\d.])(\d{1,4})\.(\d{1,4})\.(\d{1,4})(?:-([0-9A-Za-z.]+))?/.exec(text);
  if (!m) return null;
  const pre = m[4] ?? null;
  const rc = pre !== null ? /^rc\.?(\d{1,4})$/.exec(pre) : null;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), rc: rc ? Number(rc[1]) : null, pre: pre !== null && !rc ? pre : null };
}

/** Orders versions: a release after its rcs, an rc after other pre-release tags. */
export function compareRunc(a: RuncVersion, b: RuncVersion): number {
  const rank = (v: RuncVersion) => (v.pre !== null ? -1 : v.rc !== null ? v.rc : Number.MAX_SAFE_INTEGER);
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch || Math.sign(rank(a) - rank(b));
}

const FIRST_FIXED: Record<string, RuncVersion> = {
  '1.2': { major: 1, minor: 2, patch: 8, rc: null, pre: null },
  '1.3': { major: 1, minor: 3, patch: 3, rc: null, pre: null },
  '1.4': { major: 1, minor: 4, patch: 0, rc: 3, pre: null },
};

/** Upstream fixes: 1.2.8 on 1.2.x, 1.3.3 on 1.3.x, 1.4.0-rc.3 on 1.4.x, every 1.5 and later; none before 1.2. */
export function runcUpstreamFixed(v: RuncVersion): boolean {
  if (v.major !== 1) return v.major > 1;
  if (v.minor >= 5) return true;
  const first = FIRST_FIXED[`1.${v.minor}`];
  return first !== undefined && compareRunc(v, first) >= 0;
}

/** The Debian version in a package name like "runc_1.1.5+ds1-1+deb12u1_amd64", else null. */
export function debianPackageVersion(pkg: string): string | null {
  const m = /^runc_([0-9][0-9A-Za-z.+~:-]*)_[0-9A-Za-z-]+$/.exec(pkg.trim());
  return m ? m[1]! : null;
}

/** The version of a Debian changelog's top entry ("runc (1.1.5+ds1-1+deb12u1) bookworm; …"). */
export function changelogTopVersion(text: string): string | null {
  const m = /^\s*[a-z0-9][a-z0-9+.-]*\s+\(([^)\s]+)\)/.exec(text);
  return m ? m[1]! : null;
}

/** Every CVE id a text names, upper-cased, once each. */
export function cveIds(text: string): string[] {
  return [...new Set([...text.matchAll(/CVE-\d{4}-\d{4,7}/gi)].map((m) => m[0].toUpperCase()))];
}

/** Warnings for the runc the engine uses; none when it carries the fixes (upstream or backported). */
export function runcWarnings(runc: RuncReport | null): string[] {
  if (!runc) return [];
  const cves = RUNC_CVES.join(', ');
  const version = parseRuncVersion(runc.text);
  if (version && runcUpstreamFixed(version)) return [];
  if (runc.packageCves && RUNC_CVES.every((c) => runc.packageCves!.includes(c))) return [];
  const name = version ? `runc ${version.major}.${version.minor}.${version.patch}${version.rc !== null ? `-rc.${version.rc}` : version.pre ? `-${version.pre}` : ''}` : 'runc (version unreadable)';
  const pkg = runc.package ? ` (package ${runc.package})` : '';
  return [
    `${name}${pkg} predates the fixes for ${cves} (container escapes through mount races and /proc write redirection); ` +
      `its changelog does not name them as backported. Mitigation: ${RUNC_MITIGATION}`,
  ];
}

/** The runtime part of /readyz. */
export interface RuntimeReport {
  podman: string | null;
  runc: string | null;
  runcPackage: string | null;
  runsc: string | null;
  kernel: string;
  warnings: string[];
}

/** The version a runc version text names ("runc version 1.1.5+ds1\ncommit: …" → "1.1.5+ds1"). */
export function runcVersionText(text: string): string {
  const m = /runc version (\S{1,100})/.exec(text);
  return m ? m[1]! : (text.split('\n')[0] ?? '').trim().slice(0, 100);
}

/** Builds the report; `versions` null when the engine could not be asked. */
export function runtimeReport(versions: EngineVersions | null, kernel: string): RuntimeReport {
  return {
    podman: versions?.podman ?? null,
    runc: versions?.runc ? runcVersionText(versions.runc.text) : null,
    runcPackage: versions?.runc?.package ?? null,
    runsc: versions?.runsc ?? null,
    kernel,
    warnings: runcWarnings(versions?.runc ?? null),
  };
}
