import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';

/**
 * Checks every request makes before any other work (an onRequest hook: before routing to a
 * handler, body parsing, multipart or a WebSocket upgrade).
 *
 * Host (against DNS rebinding): the Host header must name the address the server listens on
 * (`listen.host`, unless it is a wildcard), the address the connection arrived on (an IP literal,
 * which DNS cannot rebind), a loopback name (`localhost`, 127.0.0.0/8, `[::1]`), or an entry of
 * `http.allowedHosts`; else 421 HOST_NOT_ALLOWED. The port in Host is not compared: rebinding is
 * about the name, and tunnels and reverse proxies legitimately present another port.
 *
 * Origin (against cross-site requests from browsers): a request with an Origin header is accepted
 * only when that origin is the server's own (`http://` + the Host it was sent to) or an entry of
 * `http.allowedOrigins`; `Origin: null`, malformed origins and anything else are foreign. A request
 * whose `Sec-Fetch-Site` is `cross-site` or `same-site` (another origin on the same site) is
 * foreign too unless its Origin is listed. Foreign requests get 403 ORIGIN_NOT_ALLOWED. Requests
 * with neither header (curl, SDKs) are unaffected.
 */
export interface GuardSettings {
  listenHost: string;
  allowedHosts: readonly string[];
  allowedOrigins: readonly string[];
}

export interface GuardInput {
  host: string | undefined;
  origin: string | undefined;
  secFetchSite: string | undefined;
  /** The local address the connection arrived on (`socket.localAddress`). */
  localAddress: string | undefined;
}

export type GuardRefusal =
  | { code: 'HOST_NOT_ALLOWED'; details: { host: string | null } }
  | { code: 'ORIGIN_NOT_ALLOWED'; details: { origin: string | null; secFetchSite?: string } };

const HOST_NAME = /^[a-z0-9_](?:[a-z0-9_.-]{0,252})$/;
const HOST_HEADER = /^(?:([A-Za-z0-9_.-]{1,253})|\[([0-9A-Fa-f:.]{2,45})\])(?::(\d{1,5}))?$/;
const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', '']);
const echo = (v: string) => v.slice(0, 256);

/**
 * The host name of a Host header or configured entry, normalised as a browser would (lower case,
 * IPv6 in brackets, IPv4 in dotted form), and its port; null when it is not a plain host[:port]
 * (userinfo, paths, empty names and out-of-range ports are all refused).
 */
export function parseHost(value: string): { hostname: string; port: number | null } | null {
  const m = HOST_HEADER.exec(value);
  if (!m) return null;
  const port = m[3] === undefined ? null : Number(m[3]);
  if (port !== null && (port < 1 || port > 65535)) return null;
  if (m[2] !== undefined) {
    if (isIP(m[2]) !== 6) return null;
    return { hostname: new URL(`http://[${m[2]}]`).hostname, port };
  }
  const name = m[1]!.toLowerCase();
  let hostname: string;
  try {
    hostname = new URL(`http://${name}`).hostname;
  } catch {
    return null;
  }
  return HOST_NAME.test(hostname) ? { hostname, port } : null;
}

/** An address (as Node reports it, or as configured) in the form Host headers carry. */
function addressName(address: string): string | null {
  const bare = address.replace(/^\[|\]$/g, '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  if (isIP(bare) === 6) return new URL(`http://[${bare}]`).hostname;
  return parseHost(bare)?.hostname ?? null;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || (isIP(hostname) === 4 && hostname.startsWith('127.'));
}

/** A configured `http.allowedOrigins` entry must be exactly a serialised http(s) origin. */
export function isSerializedOrigin(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.origin === value;
  } catch {
    return false;
  }
}

/** A configured `http.allowedHosts` entry must be a host name or address without a port. */
export function isHostEntry(value: string): boolean {
  const h = parseHost(value);
  return h !== null && h.port === null && h.hostname === value;
}

export class RequestGuard {
  private readonly names: Set<string>;
  private readonly origins: Set<string>;

  constructor(settings: GuardSettings) {
    this.names = new Set(settings.allowedHosts);
    const listen = WILDCARDS.has(settings.listenHost) ? null : addressName(settings.listenHost);
    if (listen) this.names.add(listen);
    this.origins = new Set(settings.allowedOrigins);
  }

  check(req: GuardInput): GuardRefusal | null {
    const host = req.host === undefined ? null : parseHost(req.host);
    const local = req.localAddress ? addressName(req.localAddress) : null;
    if (!host || !(isLoopback(host.hostname) || this.names.has(host.hostname) || host.hostname === local)) {
      return { code: 'HOST_NOT_ALLOWED', details: { host: req.host === undefined ? null : echo(req.host) } };
    }
    const listed = req.origin !== undefined && this.origins.has(req.origin);
    const site = req.secFetchSite?.toLowerCase();
    if (req.origin !== undefined && !listed && req.origin !== ownOrigin(host)) {
      return { code: 'ORIGIN_NOT_ALLOWED', details: { origin: echo(req.origin), ...(site ? { secFetchSite: echo(site) } : {}) } };
    }
    if ((site === 'cross-site' || site === 'same-site') && !listed) {
      return { code: 'ORIGIN_NOT_ALLOWED', details: { origin: req.origin === undefined ? null : echo(req.origin), secFetchSite: site } };
    }
    return null;
  }
}

/** `http://host[:port]` as a browser serialises the origin of a page loaded from that Host. */
function ownOrigin(host: { hostname: string; port: number | null }): string {
  return host.port === null || host.port === 80 ? `http://${host.hostname}` : `http://${host.hostname}:${host.port}`;
}

const single = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(', ') : v);

/** Installs the guard on the root instance, ahead of every route (404s and upgrades included). */
export function registerRequestGuard(app: FastifyInstance, settings: GuardSettings): void {
  const guard = new RequestGuard(settings);
  app.addHook('onRequest', async (req) => {
    const refusal = guard.check({
      host: single(req.raw.headers.host),
      origin: single(req.raw.headers.origin),
      secFetchSite: single(req.raw.headers['sec-fetch-site']),
      localAddress: req.raw.socket?.localAddress,
    });
    if (refusal) throw new AppError(refusal.code, refusal.details);
  });
}
