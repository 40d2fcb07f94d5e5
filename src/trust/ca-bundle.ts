import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Largest operator CA file accepted (a corporate bundle is a few hundred KiB at most). */
export const CA_BUNDLE_MAX_BYTES = 4 * 1024 * 1024;
/** Where a task finds the bundle: outside /workspace, in the /run tmpfs, mounted read-only. */
export const TASK_CA_PATH = '/run/sandboxshift/ca.pem';
/**
 * The variables that point common clients at the bundle: OpenSSL-based tools (Python's ssl,
 * curl, git), Node (NODE_EXTRA_CA_CERTS adds to its built-in roots), requests, pip and npm.
 * A task's own env cannot replace them.
 */
export const CA_ENV_NAMES = [
  'SSL_CERT_FILE',
  'NODE_EXTRA_CA_CERTS',
  'REQUESTS_CA_BUNDLE',
  'PIP_CERT',
  'npm_config_cafile',
  'CURL_CA_BUNDLE',
  'GIT_SSL_CAINFO',
] as const;

export function caEnv(path = TASK_CA_PATH): Record<string, string> {
  return Object.fromEntries(CA_ENV_NAMES.map((k) => [k, path]));
}

export class CaBundleError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`tasks.caBundle ${file}: ${message}`);
    this.name = 'CaBundleError';
  }
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END \1-----/g;

/**
 * The certificates of a PEM file: every PEM block must be a CERTIFICATE that parses as X.509
 * (a private key or any other block is refused, so a misplaced key never reaches a task), and
 * outside the blocks only whitespace and comment text is allowed.
 */
export function parseCertificates(text: string, file: string): X509Certificate[] {
  const certs: X509Certificate[] = [];
  let rest = text;
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (m[1] !== 'CERTIFICATE') throw new CaBundleError(file, `holds a "${m[1]}" block: only certificates are accepted`);
    try {
      certs.push(new X509Certificate(m[0]));
    } catch (err) {
      throw new CaBundleError(file, `certificate ${certs.length + 1} does not parse: ${(err as Error).message}`);
    }
    rest = rest.replace(m[0], '');
  }
  if (/-----(BEGIN|END) /.test(rest)) throw new CaBundleError(file, 'holds a malformed PEM block');
  if (certs.length === 0) throw new CaBundleError(file, 'holds no certificate');
  return certs;
}

export interface CaBundle {
  /** Host path of the combined bundle (public CAs, then the operator's). */
  path: string;
  operatorCerts: number;
  publicCerts: number;
}

/**
 * Builds the bundle tasks trust: the host's public CAs (when `publicCaFile` exists) followed by
 * the operator's, written to `<dir>/ca.pem` (0644: git intake reads it as the sandbox user).
 * Throws CaBundleError when the operator's file is unreadable, too large or not only certificates.
 */
export function buildCaBundle(operatorFile: string, publicCaFile: string, dir: string): CaBundle {
  let size: number;
  try {
    size = statSync(operatorFile).size;
  } catch (err) {
    throw new CaBundleError(operatorFile, `cannot be read: ${(err as Error).message}`);
  }
  if (size > CA_BUNDLE_MAX_BYTES) throw new CaBundleError(operatorFile, `is ${size} bytes, above the ${CA_BUNDLE_MAX_BYTES}-byte bound`);
  const operator = parseCertificates(readFileSync(operatorFile, 'utf8'), operatorFile);
  const publicText = existsSync(publicCaFile) ? readFileSync(publicCaFile, 'utf8') : '';
  const publicCount = publicText ? (publicText.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length : 0;
  const body = `${publicText.trimEnd()}${publicText ? '\n' : ''}${operator.map((c) => c.toString().trimEnd()).join('\n')}\n`;
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  const path = join(dir, 'ca.pem');
  const tmp = join(dirname(path), `.ca.pem.${process.pid}`);
  writeFileSync(tmp, body, { mode: 0o644 });
  renameSync(tmp, path);
  return { path, operatorCerts: operator.length, publicCerts: publicCount };
}
