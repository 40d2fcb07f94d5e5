import { BlockList, isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { lookup } from 'node:dns/promises';

/**
 * Destination addresses the server never connects to on a task's behalf (egress proxy) or for
 * a workspace (git intake): anything that is not the public internet. An operator's explicit
 * list of test ranges (`egress.allowPrivateRanges`) may open some of them, for tests on loopback.
 */
const FORBIDDEN: ReadonlyArray<readonly [string, number, 'ipv4' | 'ipv6', string]> = [
  ['0.0.0.0', 8, 'ipv4', 'unspecified'],
  ['10.0.0.0', 8, 'ipv4', 'private'],
  ['100.64.0.0', 10, 'ipv4', 'cgnat'],
  ['127.0.0.0', 8, 'ipv4', 'loopback'],
  ['169.254.0.0', 16, 'ipv4', 'link_local'], // includes 169.254.169.254 (cloud metadata)
  ['172.16.0.0', 12, 'ipv4', 'private'],
  ['192.0.0.0', 24, 'ipv4', 'reserved'],
  ['192.0.2.0', 24, 'ipv4', 'documentation'],
  ['192.168.0.0', 16, 'ipv4', 'private'],
  ['198.18.0.0', 15, 'ipv4', 'benchmarking'],
  ['198.51.100.0', 24, 'ipv4', 'documentation'],
  ['203.0.113.0', 24, 'ipv4', 'documentation'],
  ['224.0.0.0', 4, 'ipv4', 'multicast'],
  ['240.0.0.0', 4, 'ipv4', 'reserved'], // includes 255.255.255.255
  ['::', 128, 'ipv6', 'unspecified'],
  ['::1', 128, 'ipv6', 'loopback'],
  ['64:ff9b::', 96, 'ipv6', 'nat64'],
  ['64:ff9b:1::', 48, 'ipv6', 'nat64'],
  ['100::', 64, 'ipv6', 'discard'],
  ['2001:db8::', 32, 'ipv6', 'documentation'],
  ['2002::', 16, 'ipv6', '6to4'],
  ['fc00::', 7, 'ipv6', 'unique_local'], // includes fd00:ec2::254 (cloud metadata over IPv6)
  ['fe80::', 10, 'ipv6', 'link_local'],
  ['fec0::', 10, 'ipv6', 'site_local'],
  ['ff00::', 8, 'ipv6', 'multicast'],
];

const forbidden = FORBIDDEN.map(([net, prefix, family, reason]) => {
  const list = new BlockList();
  list.addSubnet(net, prefix, family);
  return { list, reason };
});

/** Parse "a.b.c.d/n" or "x::/n" (a bare address means a single host). */
export function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | null {
  const [address, prefixText, extra] = cidr.split('/');
  if (extra !== undefined || address === undefined) return null;
  const version = isIP(address);
  if (version === 0) return null;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText ?? String(max)) || prefix > max) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

export function buildRangeList(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const parsed = parseCidr(c);
    if (!parsed) throw new Error(`invalid address range: ${c}`);
    list.addSubnet(parsed.address, parsed.prefix, parsed.family);
  }
  return list;
}

/** Strip brackets and an IPv4-mapped prefix: "[::ffff:127.0.0.1]" → "127.0.0.1". */
function normalise(ip: string): string {
  let a = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  if (mapped?.[1]) a = mapped[1];
  return a;
}

/**
 * Why `ip` may not be connected to, or null when it may. `allowed` holds the operator's test
 * ranges; an address inside one is allowed even if it is private or loopback.
 */
export function forbiddenReason(ip: string, allowed?: BlockList): string | null {
  const a = normalise(ip);
  const version = isIP(a);
  if (version === 0) return 'not_an_address';
  const family = version === 4 ? 'ipv4' : 'ipv6';
  if (allowed?.check(a, family)) return null;
  for (const f of forbidden) if (f.list.check(a, family)) return f.reason;
  return null;
}

/**
 * Addresses assigned to this host's interfaces right now. A destination among them is the host
 * itself even when it looks public (a name an attacker points at the server's own public IP), so
 * the egress proxy refuses it unless an operator test range allows it.
 */
export function localInterfaceAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) out.add(normalise(i.address.split('%')[0]!.toLowerCase()));
  return out;
}

/** forbiddenReason, plus `local_interface` for the host's own addresses (see above). */
export function destinationReason(ip: string, allowed: BlockList | undefined, local: ReadonlySet<string>): string | null {
  const a = normalise(ip.toLowerCase());
  const version = isIP(a);
  if (version !== 0 && allowed?.check(a, version === 4 ? 'ipv4' : 'ipv6')) return null;
  return forbiddenReason(a, allowed) ?? (local.has(a) ? 'local_interface' : null);
}

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

/**
 * Name resolution used for egress decisions: the operator's static table first (tests map their
 * host names to loopback servers there), else the system resolver. IP literals resolve to
 * themselves. Throws on failure (the caller records it as a denial).
 */
export function createResolver(staticHosts: Readonly<Record<string, readonly string[]>>): Resolver {
  const table = new Map(Object.entries(staticHosts).map(([k, v]) => [k.toLowerCase(), v]));
  return async (host: string) => {
    const h = normalise(host.toLowerCase());
    if (isIP(h)) return [{ address: h, family: isIP(h) as 4 | 6 }];
    const fixed = table.get(h);
    if (fixed) return fixed.map((address) => ({ address, family: isIP(address) as 4 | 6 }));
    const found = await lookup(h, { all: true, verbatim: true });
    return found.map((r) => ({ address: r.address, family: r.family as 4 | 6 }));
  };
}
