/**
 * The egress proxy's parser for the head of one client request (pure, bounded). It accepts only
 * what a proxy client sends: `CONNECT host:port HTTP/1.x` and absolute-form `http://` requests.
 * Everything else, including every malformed byte sequence, is an error with a status to answer.
 */
import { bodyFraming, type BodyFraming } from './request-body.js';

export interface ProxyTarget {
  /** The host as written by the client (unchecked; the policy judges it). */
  host: string;
  port: number;
}

export type ParsedHead =
  | { kind: 'incomplete' }
  | { kind: 'error'; status: 400 | 405 | 431 | 505; reason: string }
  | ({ kind: 'connect'; headBytes: number; headers: [string, string][] } & ProxyTarget)
  | ({
      kind: 'forward';
      headBytes: number;
      method: string;
      /** origin-form path and query, as sent upstream */
      path: string;
      headers: [string, string][];
      /** where the body ends (the next request on the connection starts there) */
      body: BodyFraming;
    } & ProxyTarget);

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const MAX_HEADERS = 100;

/** `host:port`, `[v6]:port` or (default port given) `host`. */
export function parseAuthority(authority: string, defaultPort: number | null): ProxyTarget | null {
  let host: string;
  let portText: string | undefined;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return null;
    host = authority.slice(0, end + 1);
    const rest = authority.slice(end + 1);
    if (rest !== '' && !rest.startsWith(':')) return null;
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const colon = authority.lastIndexOf(':');
    host = colon < 0 ? authority : authority.slice(0, colon);
    portText = colon < 0 ? undefined : authority.slice(colon + 1);
  }
  if (host === '' || host.length > 255 || /[\s/@?#\\%]/.test(host)) return null;
  if (portText === undefined) return defaultPort === null ? null : { host, port: defaultPort };
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  return port >= 1 && port <= 65535 ? { host, port } : null;
}

/**
 * Parses `buf` (everything received so far). `incomplete` until the blank line arrives; an error
 * once the head would exceed `maxBytes`.
 */
export function parseRequestHead(buf: Buffer, maxBytes: number): ParsedHead {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) {
    return buf.length >= maxBytes ? { kind: 'error', status: 431, reason: 'request head too large' } : { kind: 'incomplete' };
  }
  const headBytes = end + 4;
  if (headBytes > maxBytes) return { kind: 'error', status: 431, reason: 'request head too large' };
  // latin1 maps every byte to one char, so nothing is lost or merged; non-ASCII is refused below.
  const text = buf.subarray(0, end).toString('latin1');
  if (/[^\t\x20-\x7e\r\n]/.test(text)) return { kind: 'error', status: 400, reason: 'non-ASCII or control bytes in the request head' };
  const lines = text.split('\r\n');
  if (lines.some((l) => l.includes('\n') || l.includes('\r'))) return { kind: 'error', status: 400, reason: 'bare CR or LF' };
  const parts = lines[0]!.split(' ');
  if (parts.length !== 3) return { kind: 'error', status: 400, reason: 'malformed request line' };
  const [method, target, version] = parts as [string, string, string];
  if (!TOKEN.test(method) || method.length > 32) return { kind: 'error', status: 400, reason: 'malformed method' };
  if (!/^HTTP\/1\.[01]$/.test(version)) return { kind: 'error', status: 505, reason: 'only HTTP/1.0 and HTTP/1.1' };
  if (lines.length - 1 > MAX_HEADERS) return { kind: 'error', status: 431, reason: 'too many header fields' };
  const headers: [string, string][] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    // obs-fold (a line starting with whitespace) and names with spaces are request smuggling tools.
    if (!TOKEN.test(name)) return { kind: 'error', status: 400, reason: 'malformed header field' };
    headers.push([name, line.slice(colon + 1).trim()]);
  }
  if (method === 'CONNECT') {
    const t = parseAuthority(target, null);
    return t ? { kind: 'connect', headBytes, headers, ...t } : { kind: 'error', status: 400, reason: 'CONNECT needs host:port' };
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(target);
  if (!scheme) return { kind: 'error', status: 400, reason: 'not a proxy request (absolute http:// URI or CONNECT expected)' };
  if (scheme[1]!.toLowerCase() !== 'http') {
    return { kind: 'error', status: 400, reason: `scheme ${scheme[1]} is not proxied in absolute form (use CONNECT for https)` };
  }
  const rest = target.slice(scheme[0].length);
  const cut = rest.search(/[/?#]/);
  const authority = cut < 0 ? rest : rest.slice(0, cut);
  let path = cut < 0 ? '/' : rest.slice(cut);
  if (path.startsWith('?')) path = `/${path}`;
  const hash = path.indexOf('#');
  if (hash >= 0) path = path.slice(0, hash);
  const t = parseAuthority(authority, 80);
  if (!t) return { kind: 'error', status: 400, reason: 'malformed host in the request URI' };
  const body = bodyFraming(headers, version);
  if ('error' in body) return { kind: 'error', status: 400, reason: body.error };
  return { kind: 'forward', headBytes, method, path, headers, body, ...t };
}

/** Headers that concern the hop to the proxy, never forwarded upstream. */
const HOP = new Set(['connection', 'proxy-connection', 'keep-alive', 'proxy-authorization', 'proxy-authenticate', 'te', 'upgrade']);

/** The head sent upstream: origin-form, Host from the URI, one request per connection. */
export function upstreamHead(h: Extract<ParsedHead, { kind: 'forward' }>): Buffer {
  const host = h.port === 80 ? h.host : `${h.host}:${h.port}`;
  const lines = [`${h.method} ${h.path} HTTP/1.1`, `Host: ${host}`];
  for (const [name, value] of h.headers) {
    const lower = name.toLowerCase();
    if (lower === 'host' || HOP.has(lower)) continue;
    lines.push(`${name}: ${value}`);
  }
  lines.push('Connection: close', '', '');
  return Buffer.from(lines.join('\r\n'), 'latin1');
}
