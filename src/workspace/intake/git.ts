import { spawn } from 'node:child_process';
import { chown, lstat, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Config } from '../../config/schema.js';
import { buildRangeList, createResolver, forbiddenReason } from '../../egress/addresses.js';
import { AppError } from '../../errors.js';
import { SANDBOX_UID } from '../workspaces.js';
import { copyTree } from './hostpath.js';
import type { UpstreamProxy } from '../../egress/upstream.js';
import type { TreeWriter } from './writer.js';

export interface GitSource {
  url: string;
  ref: string;
}

export interface GitOptions {
  git: Config['workspaces']['git'];
  egress: Pick<Config['egress'], 'testHosts' | 'allowPrivateRanges'>;
  tmpDir: string;
  /** CA bundle git trusts instead of the system's (tasks.caBundle combined with the public CAs). */
  caFile?: string | null;
  /** The operator's upstream proxy: git reaches the host through it (by name). */
  upstreamProxy?: UpstreamProxy | null;
}

/** A branch, tag or commit name: no option-like or path-escaping forms. */
const REF = /^(?!-)(?!.*\.\.)(?!.*\/\/)[A-Za-z0-9._/-]{1,255}$/;
const STDERR_KEEP = 2048;

export interface CheckedUrl {
  url: string;
  host: string;
  port: number;
  /** The checked address git connects to; null when an upstream proxy resolves the name. */
  address: string | null;
}

/**
 * Checks a git URL against the policy and pins it to one checked address: https only (plain
 * http only for configured test hosts), no credentials, an allowed host and port, and an address
 * the egress policy permits. ext::, file://, ssh://, git:// and scp-like forms never parse as
 * http(s) URLs and are refused here.
 */
export async function checkGitUrl(raw: string, opts: GitOptions): Promise<CheckedUrl> {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new AppError('GIT_URL_REFUSED', { url: raw, rule: 'not_a_url' });
  }
  const host = u.hostname.toLowerCase();
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && opts.git.plainHttpHosts.includes(host))) {
    throw new AppError('GIT_URL_REFUSED', { url: raw, rule: u.protocol === 'http:' ? 'plain_http_not_allowed' : 'scheme_not_allowed', scheme: u.protocol.replace(/:$/, '') });
  }
  if (u.username !== '' || u.password !== '') throw new AppError('GIT_URL_REFUSED', { url: raw, rule: 'credentials_in_url' });
  const port = u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : Number(u.port);
  if (!opts.git.ports.includes(port)) throw new AppError('GIT_URL_REFUSED', { url: raw, rule: 'port_not_allowed', port, allowed: opts.git.ports });
  if (!opts.git.allowedHosts.includes(host)) {
    throw new AppError('GIT_HOST_NOT_ALLOWED', { host, bound: 'workspaces.git.allowedHosts' });
  }
  let addresses: string[];
  try {
    addresses = (await createResolver(opts.egress.testHosts)(host)).map((a) => a.address);
  } catch (err) {
    // Behind an upstream proxy a name local DNS cannot answer is the upstream's to resolve.
    if (opts.upstreamProxy) return { url: u.href, host: u.hostname, port, address: null };
    throw new AppError('GIT_CLONE_FAILED', { host, rule: 'dns', reason: (err as Error).message });
  }
  const allowed = buildRangeList(opts.egress.allowPrivateRanges);
  const reasons = addresses.map((a) => ({ address: a, reason: forbiddenReason(a, allowed) }));
  const ok = reasons.find((r) => r.reason === null);
  if (!ok) throw new AppError('GIT_ADDRESS_FORBIDDEN', { host, addresses: reasons });
  return { url: u.href, host: u.hostname, port, address: opts.upstreamProxy ? null : ok.address };
}

/**
 * Fetches `ref` (branch, tag or commit) at depth 1 into a temporary directory owned by the
 * sandbox user, as that user, then copies the checkout into the staging directory through the
 * writer (so the archive rules for links, special files and limits apply to it too).
 */
export async function cloneGit(source: GitSource, writer: TreeWriter, opts: GitOptions): Promise<void> {
  if (!REF.test(source.ref)) throw new AppError('VALIDATION_FAILED', { issues: [{ path: 'git.ref', message: 'not a branch, tag or commit name' }] });
  const target = await checkGitUrl(source.url, opts);
  await mkdir(opts.tmpDir, { recursive: true, mode: 0o711 });
  const work = await mkdtemp(join(opts.tmpDir, 'git-'));
  try {
    await chown(work, SANDBOX_UID, SANDBOX_UID);
    const repo = join(work, 'repo');
    const deadline = Date.now() + opts.git.timeoutSeconds * 1000;
    await runGit(['init', '-q', repo], work, deadline, opts);
    const protocols = target.url.startsWith('http:') ? 'http' : 'https';
    const fetch = ['-C', repo, ...pinned(target), 'fetch', '-q', '--depth', '1', '--no-tags', '--no-recurse-submodules', target.url, source.ref];
    await runGit(fetch, work, deadline, opts, protocols);
    await runGit(['-C', repo, 'checkout', '-q', '--detach', 'FETCH_HEAD'], work, deadline, opts);
    // The poll above may miss a fast clone: check the final size before copying it.
    const bytes = await treeBytes(work, opts.git.maxBytes);
    if (bytes > opts.git.maxBytes) throw new AppError('GIT_TOO_LARGE', { bytes, limit: opts.git.maxBytes, bound: 'workspaces.git.maxBytes' });
    await copyTree(repo, writer);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Connection settings: the checked address only (unless an upstream proxy resolves the name), no redirects, no credential helpers. */
function pinned(t: CheckedUrl): string[] {
  const safe = ['-c', 'http.followRedirects=false', '-c', 'credential.helper='];
  if (t.address === null) return safe;
  const addr = isIP(t.address) === 6 ? `[${t.address}]` : t.address;
  return ['-c', `http.curloptResolve=${t.host}:${t.port}:${addr}`, ...safe];
}

/** Config every git call gets: protocol allow-list, no hooks, no prompts, no system/global config. */
const BASE_CONFIG = [
  '-c', 'protocol.allow=never',
  '-c', 'protocol.https.allow=always',
  '-c', 'protocol.http.allow=always', // only reached for configured test hosts (checkGitUrl); GIT_ALLOW_PROTOCOL narrows it per call
  '-c', 'core.hooksPath=/dev/null',
  '-c', 'core.fsmonitor=false',
  '-c', 'submodule.recurse=false',
  '-c', 'advice.detachedHead=false',
  '-c', 'init.defaultBranch=main',
];

function runGit(args: string[], home: string, deadline: number, opts: GitOptions, protocols = 'https'): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.git.binary, [...BASE_CONFIG, ...args], {
      cwd: home,
      uid: SANDBOX_UID,
      gid: SANDBOX_UID,
      detached: true, // its own process group, so a timeout kills git and its helpers together
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        PATH: '/usr/local/bin:/usr/bin:/bin',
        HOME: home,
        GIT_TERMINAL_PROMPT: '0',
        GIT_ASKPASS: '/bin/false',
        SSH_ASKPASS: '/bin/false',
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_CONFIG_GLOBAL: '/dev/null',
        GIT_ALLOW_PROTOCOL: protocols,
        GIT_PROTOCOL_FROM_USER: '0',
        ...(opts.caFile ? { GIT_SSL_CAINFO: opts.caFile } : {}),
        // The upstream proxy with its credentials: in git's environment, not its arguments.
        ...(opts.upstreamProxy ? { http_proxy: opts.upstreamProxy.urlWithCredentials, https_proxy: opts.upstreamProxy.urlWithCredentials, no_proxy: '' } : {}),
      },
    });
    let stderr = '';
    let stopped: AppError | null = null;
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEEP);
    });
    const kill = (err: AppError) => {
      if (stopped) return;
      stopped = err;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(
      () => kill(new AppError('GIT_TIMEOUT', { limitSeconds: opts.git.timeoutSeconds, bound: 'workspaces.git.timeoutSeconds' })),
      Math.max(0, deadline - Date.now()),
    );
    // The clone's size is polled (git has no hard cap on what it downloads).
    let polling = false;
    const poll = setInterval(() => {
      if (polling) return;
      polling = true;
      void treeBytes(home, opts.git.maxBytes).then((bytes) => {
        polling = false;
        if (bytes > opts.git.maxBytes) kill(new AppError('GIT_TOO_LARGE', { bytes, limit: opts.git.maxBytes, bound: 'workspaces.git.maxBytes' }));
      });
    }, 250);
    child.on('error', (err) => {
      clearTimeout(timer);
      clearInterval(poll);
      reject(new AppError('GIT_CLONE_FAILED', { reason: err.message }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      clearInterval(poll);
      if (stopped) return reject(stopped);
      if (code === 0) return resolve();
      reject(new AppError('GIT_CLONE_FAILED', { command: args.find((a) => ['init', 'fetch', 'checkout'].includes(a)), exitCode: code, stderr: stderr.trim() }));
    });
  });
}

/** Bytes under `dir` (lstat, no links followed); stops counting past `cap`. */
async function treeBytes(dir: string, cap: number): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return; // git is still creating or removing it
    }
    for (const n of names) {
      if (total > cap) return;
      try {
        const st = await lstat(join(d, n));
        if (st.isDirectory()) await walk(join(d, n));
        else total += st.size;
      } catch {
        // removed meanwhile
      }
    }
  };
  await walk(dir);
  return total;
}
