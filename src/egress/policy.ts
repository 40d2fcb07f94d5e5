import { isIP } from 'node:net';
import { parse as parseDomain } from 'tldts';
import { AppError } from '../errors.js';

/**
 * Egress allowlist policy, pure: which host names a task may reach.
 *
 * Entries are exact host names (`api.example.com`) or wildcards (`*.example.org`, matching
 * subdomains but not the apex). IP literals are never entries: the proxy resolves names itself,
 * so an allowlist of names is the whole policy. Over-broad patterns (`*`, `*.com`, `*.co.uk`,
 * `*.github.io`: a wildcard over a public suffix, judged with the public suffix list including its
 * private section) are refused unless the operator enabled unrestricted egress, and the task then
 * records `unrestricted: true`.
 */
export type Pattern = { kind: 'exact'; host: string } | { kind: 'wildcard'; suffix: string } | { kind: 'any' };

export interface AllowlistSettings {
  /** Patterns any task may ask for; null: no ceiling. */
  ceiling: readonly string[] | null;
  /** Whether over-broad patterns are accepted (recorded on the task as unrestricted). */
  allowUnrestricted: boolean;
}

export interface AllowlistSources {
  /** The task request's `network.allow`, when the request has one (even an empty one). */
  request?: readonly string[] | undefined;
  /** The workspace's sandboxshift.yaml list, when the workspace file has one. */
  workspace?: readonly string[] | undefined;
  /** The server's `egress.defaultAllow`. */
  serverDefault: readonly string[];
}

export interface ResolvedAllowlist {
  allow: string[];
  unrestricted: boolean;
  source: 'request' | 'workspace' | 'server';
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

export type HostCheck =
  | { ok: true; host: string }
  | { ok: false; reason: 'ip_literal' | 'invalid_host' }
  /**
   * A host name with a port still attached (`name:443`, what `CONNECT name:443:8443` leaves as
   * its host): the name is `host`, and no port it names is a port the proxy would connect to.
   */
  | { ok: false; reason: 'port_not_allowed'; host: string };

/**
 * A host name as the proxy and the policy compare it: lower case, no trailing dot, ASCII labels
 * (IDNs in their xn-- form). Anything that is or could be read as an IP address (`10.0.0.1`,
 * `[::1]`, `127.1`, `0x7f000001`, `2130706433`) is an `ip_literal`: resolvers accept such forms.
 * Brackets hold IP literals only, so a bracketed name is an `invalid_host`.
 */
export function checkHost(raw: string): HostCheck {
  let h = raw.toLowerCase();
  if (isIP(h) !== 0) return { ok: false, reason: 'ip_literal' };
  if (h.startsWith('[')) {
    const inner = h.endsWith(']') ? h.slice(1, -1) : '';
    const c = inner === '' ? null : checkHost(inner);
    return c && !c.ok && c.reason === 'ip_literal' ? c : { ok: false, reason: 'invalid_host' };
  }
  const colon = h.indexOf(':');
  if (colon >= 0) {
    const name = checkHost(h.slice(0, colon));
    if (name.ok && /^(:\d{1,5})+$/.test(h.slice(colon))) return { ok: false, reason: 'port_not_allowed', host: name.host };
    return { ok: false, reason: 'ip_literal' };
  }
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.length === 0 || h.length > 253) return { ok: false, reason: 'invalid_host' };
  const labels = h.split('.');
  if (!labels.every((l) => LABEL.test(l))) return { ok: false, reason: 'invalid_host' };
  // A numeric last label (`127.1`, `0x7f.1`, `2130706433`) is how inet_aton spells an address.
  if (/^(0x[0-9a-f]*|[0-9]+)$/.test(labels[labels.length - 1]!)) return { ok: false, reason: 'ip_literal' };
  return { ok: true, host: h };
}

/** Parses one allowlist entry; throws EGRESS_PATTERN_INVALID naming the entry. */
export function parsePattern(entry: string): Pattern {
  if (entry === '*') return { kind: 'any' };
  const wildcard = entry.startsWith('*.');
  const c = checkHost(wildcard ? entry.slice(2) : entry);
  if (!c.ok) {
    const reason = c.reason === 'ip_literal' ? 'ip_literal' : 'invalid_host';
    const why =
      c.reason === 'ip_literal'
        ? 'IP addresses are not allowed: list host names'
        : c.reason === 'port_not_allowed'
          ? 'an entry is a host name without a port (the operator sets the ports: egress.ports)'
          : 'not a host name or *.suffix';
    throw new AppError('EGRESS_PATTERN_INVALID', { entry, reason }, `Egress allowlist entry "${entry}": ${why}`);
  }
  return wildcard ? { kind: 'wildcard', suffix: c.host } : { kind: 'exact', host: c.host };
}

export function formatPattern(p: Pattern): string {
  return p.kind === 'any' ? '*' : p.kind === 'wildcard' ? `*.${p.suffix}` : p.host;
}

/** `*` and a wildcard over a public suffix (ICANN or private section of the list). */
export function isOverBroad(p: Pattern): boolean {
  if (p.kind === 'any') return true;
  if (p.kind === 'exact') return false;
  const d = parseDomain(p.suffix, { allowPrivateDomains: true });
  return d.domain === null || d.publicSuffix === p.suffix;
}

/** Whether `host` (already normalised by checkHost) matches the pattern. `*.x` excludes `x`. */
export function matchesPattern(host: string, p: Pattern): boolean {
  if (p.kind === 'any') return true;
  if (p.kind === 'exact') return host === p.host;
  return host.endsWith(`.${p.suffix}`);
}

export function hostAllowed(host: string, allow: readonly Pattern[]): boolean {
  return allow.some((p) => matchesPattern(host, p));
}

/** Whether everything `p` matches is matched by some ceiling pattern. */
export function insideCeiling(p: Pattern, ceiling: readonly Pattern[]): boolean {
  return ceiling.some((c) => {
    if (c.kind === 'any') return true;
    if (p.kind === 'any') return false;
    if (p.kind === 'exact') return matchesPattern(p.host, c);
    // *.a.example.org is inside *.example.org and *.a.example.org, never inside an exact name.
    return c.kind === 'wildcard' && (p.suffix === c.suffix || p.suffix.endsWith(`.${c.suffix}`));
  });
}

/**
 * The task's allowlist: the request's list replaces the workspace file's, which replaces the
 * server default (an explicit empty list means no network). Every entry is validated, judged for
 * breadth and checked against the ceiling; duplicates are dropped. Throws AppError (4xx).
 */
export function resolveAllowlist(sources: AllowlistSources, settings: AllowlistSettings): ResolvedAllowlist {
  const [list, source] =
    sources.request !== undefined
      ? [sources.request, 'request' as const]
      : sources.workspace !== undefined
        ? [sources.workspace, 'workspace' as const]
        : [sources.serverDefault, 'server' as const];
  const ceiling = settings.ceiling?.map(parsePattern) ?? null;
  const allow: string[] = [];
  let unrestricted = false;
  for (const entry of list) {
    const p = parsePattern(entry);
    if (isOverBroad(p)) {
      if (!settings.allowUnrestricted) {
        throw new AppError(
          'EGRESS_PATTERN_TOO_BROAD',
          { entry, source },
          `Egress allowlist entry "${entry}" covers a whole public suffix; list the domains you need (or the operator enables egress.allowUnrestricted)`,
        );
      }
      unrestricted = true;
    }
    if (ceiling && !insideCeiling(p, ceiling)) {
      throw new AppError(
        'EGRESS_OUTSIDE_CEILING',
        { host: entry, source, ceiling: settings.ceiling },
        `Egress allowlist entry "${entry}" is outside the server's ceiling (egress.ceiling)`,
      );
    }
    const text = formatPattern(p);
    if (!allow.includes(text)) allow.push(text);
  }
  return { allow, unrestricted, source };
}
