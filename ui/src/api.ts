/** REST calls with the signed-in key, and the error shape the server answers with. */

const KEY_ITEM = 'sandboxshift.key';

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export function currentKey(): string | null {
  return sessionStorage.getItem(KEY_ITEM);
}

export function setKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

export function authHeaders(): Record<string, string> {
  const key = currentKey();
  return key ? { authorization: `Bearer ${key}` } : {};
}

/** The server's `{"error": {"code", "message"}}`, or a stand-in when the body is not one. */
async function errorOf(res: Response): Promise<ApiError> {
  let body: unknown = null;
  try {
    body = await res.json();
  } catch {
    // not JSON: fall through
  }
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') return new ApiError(e.code, e.message, res.status);
  return new ApiError(`HTTP_${res.status}`, res.statusText || 'request failed', res.status);
}

export async function request(method: string, path: string, body?: BodyInit, contentType?: string): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: { ...authHeaders(), ...(contentType ? { 'content-type': contentType } : {}) },
      body,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (err) {
    throw new ApiError('NETWORK_ERROR', `the server could not be reached (${(err as Error).message})`, 0);
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function getJson<T>(path: string): Promise<T> {
  return (await request('GET', path)).json() as Promise<T>;
}

export async function postJson<T>(path: string, body?: unknown): Promise<T> {
  const res = await request('POST', path, body === undefined ? undefined : JSON.stringify(body), body === undefined ? undefined : 'application/json');
  return res.json() as Promise<T>;
}

/** The WebSocket URL of a path on this server (ws: or wss: as the page was loaded). */
export function wsUrl(path: string): string {
  const u = new URL(path, location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  return u.toString();
}

/**
 * Subprotocols for the stream: with a key, `sandboxshift.v1` and `bearer.<key>` (the server
 * selects the first); without one, none (a server without keys needs no key).
 */
export function wsProtocols(): string[] {
  const key = currentKey();
  return key ? ['sandboxshift.v1', `bearer.${key}`] : [];
}

export interface Task {
  id: string;
  status: string;
  command: string;
  image: { name: string; markers: string[] };
  workspaceId: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  durationMs: number | null;
  exitCode: number | null;
  reason: string | null;
  error: string | null;
  stdin: boolean;
}

export interface TaskPage {
  tasks: Task[];
  nextCursor: string | null;
}

export const ACTIVE = new Set(['queued', 'running']);
