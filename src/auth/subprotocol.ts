import { KEY_PATTERN } from './keys.js';

/** The WebSocket subprotocol of the task stream; the server selects it when a client offers it. */
export const STREAM_SUBPROTOCOL = 'sandboxshift.v1';
/** A browser cannot set headers on a WebSocket: it offers its key as the subprotocol `bearer.<key>`. */
export const BEARER_PREFIX = 'bearer.';

/** The subprotocols of a Sec-WebSocket-Protocol header (one or several), in offered order. */
export function offeredSubprotocols(header: string | string[] | undefined): string[] {
  if (header === undefined) return [];
  return (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/**
 * The key a WebSocket upgrade offers as subprotocols: `sandboxshift.v1` together with exactly one
 * `bearer.<key>` whose key has the key form; else null.
 */
export function subprotocolKey(header: string | string[] | undefined): string | null {
  const offered = offeredSubprotocols(header);
  if (!offered.includes(STREAM_SUBPROTOCOL)) return null;
  const bearers = offered.filter((p) => p.startsWith(BEARER_PREFIX));
  if (bearers.length !== 1) return null;
  const key = bearers[0]!.slice(BEARER_PREFIX.length);
  return KEY_PATTERN.test(key) ? key : null;
}

/**
 * Which offered subprotocol the server answers with (ws `handleProtocols`): `sandboxshift.v1`
 * when offered, else none; never `bearer.<key>`, which would echo the key back.
 */
export function selectSubprotocol(offered: ReadonlySet<string>): string | false {
  return offered.has(STREAM_SUBPROTOCOL) ? STREAM_SUBPROTOCOL : false;
}
