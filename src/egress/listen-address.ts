import { isIP } from 'node:net';

/** `IP:port` or `[IPv6]:port` (egress.tcp.listen) as a host and port to bind, or null. */
export function listenAddress(text: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (isIP(host) !== (m[1] ? 6 : 4) || port < 1 || port > 65535) return null;
  return { host, port };
}
