/**
 * What a browser page sees on a server with keys: a WebSocket offering the subprotocols
 * `sandboxshift.v1` and `bearer.<key>` is authenticated by the key and gets `sandboxshift.v1`
 * (never the key echoed back); without a valid key, or from an origin not on the list (key or
 * not), the upgrade is refused with a JSON error before any socket exists; REST answers CORS for
 * listed origins only. Real server, real Podman, real `ws` client, real SQLite keys.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import t from 'tap';
import WebSocket from 'ws';
import { KeyStore } from '../../src/auth/key-store.js';
import { hashKey } from '../../src/auth/keys.js';
import { DATABASE_FILE } from '../../src/store/sqlite.js';
import { api } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const APP = 'https://app.example.test';
const CONFIG_KEY = `ssk_${'C'.repeat(43)}`;
const srv = await startTestServer({
  http: { allowedOrigins: [APP] },
  auth: { keys: [{ id: 'cfg-ops', tenant: 'ops', role: 'admin', sha256: hashKey(CONFIG_KEY) }] },
});
t.teardown(() => srv.close());
// A key the way `sandboxshift keys create` makes one: in the server's own database file.
const store = KeyStore.open(join(srv.dataDir, DATABASE_FILE))!;
t.teardown(() => store.close());
const { key: KEY, record } = store.create('team-a', 'user');

type Upgrade = { status: number; json: any; headers: Record<string, unknown> } | { ws: WebSocket; frames: { type: string; data?: string }[]; closed: Promise<void> };

/** A WebSocket upgrade as a browser makes it (Origin, subprotocols, no Authorization). */
function upgrade(path: string, protocols: string[], headers: Record<string, string> = {}): Promise<Upgrade> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${srv.wsUrl}${path}`, protocols, { headers });
    // Frames of a finished task come at once after the upgrade: collect them from the start.
    const frames: { type: string; data?: string }[] = [];
    ws.on('message', (m) => frames.push(JSON.parse(m.toString())));
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    ws.once('open', () => resolve({ ws, frames, closed }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        ws.on('error', () => {});
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, json: JSON.parse(text), headers: res.headers });
      });
    });
    ws.once('error', reject);
  });
}

const auth = { authorization: `Bearer ${KEY}` };
const task = (await api(srv.url, 'POST', '/v1/tasks', { command: 'echo from-the-task' }, auth)).json as { id: string };

t.test('a key in the subprotocol opens the stream and the server selects sandboxshift.v1', async (t) => {
  for (const protocols of [['sandboxshift.v1', `bearer.${KEY}`], [`bearer.${KEY}`, 'sandboxshift.v1'], ['sandboxshift.v1', `bearer.${CONFIG_KEY}`]]) {
    const r = await upgrade(`/v1/tasks/${task.id}/stream`, protocols, { origin: APP });
    if (!('ws' in r)) {
      t.fail(`upgrade refused: ${r.status} ${JSON.stringify(r.json)}`);
      continue;
    }
    t.equal(r.ws.protocol, 'sandboxshift.v1', `offered ${protocols.map((p) => p.slice(0, 12)).join(', ')}: sandboxshift.v1 is selected, not the key`);
    await r.closed;
    const frames = r.frames;
    t.equal(frames.filter((f) => f.type === 'stdout').map((f) => f.data).join(''), 'from-the-task\n', 'the frames arrive');
    t.equal(frames.at(-1)?.type, 'exit');
  }
});

t.test('without a valid key the upgrade is refused 401 with a JSON error, before any socket exists', async (t) => {
  const cases: [string, string[]][] = [
    ['no subprotocols', []],
    ['sandboxshift.v1 alone', ['sandboxshift.v1']],
    ['an unknown key', ['sandboxshift.v1', `bearer.ssk_${'x'.repeat(43)}`]],
    ['the key without sandboxshift.v1', [`bearer.${KEY}`]],
    ['a malformed key', ['sandboxshift.v1', 'bearer.not-a-key']],
  ];
  const bodies = new Set<string>();
  for (const [label, protocols] of cases) {
    const r = await upgrade(`/v1/tasks/${task.id}/stream`, protocols, { origin: APP });
    if ('ws' in r) {
      t.fail(`${label}: the socket opened`);
      r.ws.terminate();
      continue;
    }
    t.equal(r.status, 401, `${label}: 401`);
    t.equal(r.json.error.code, 'UNAUTHENTICATED', `${label}: UNAUTHENTICATED`);
    bodies.add(JSON.stringify(r.json));
  }
  t.equal(bodies.size, 1, 'every refusal reads alike');
});

t.test('a revoked key in the subprotocol is refused at once', async (t) => {
  const extra = store.create('team-a', 'user');
  const before = await upgrade(`/v1/tasks/${task.id}/stream`, ['sandboxshift.v1', `bearer.${extra.key}`]);
  t.ok('ws' in before, 'works before');
  if ('ws' in before) before.ws.terminate();
  store.revoke(extra.record.id);
  const after = await upgrade(`/v1/tasks/${task.id}/stream`, ['sandboxshift.v1', `bearer.${extra.key}`]);
  t.match(after, { status: 401, json: { error: { code: 'UNAUTHENTICATED' } } });
});

t.test('an origin not on the list is refused before the upgrade, even with a valid key', async (t) => {
  for (const origin of ['https://evil.test', 'null', `${APP}.evil.test`]) {
    const r = await upgrade(`/v1/tasks/${task.id}/stream`, ['sandboxshift.v1', `bearer.${KEY}`], { origin });
    if ('ws' in r) {
      t.fail(`${origin}: the socket opened`);
      r.ws.terminate();
      continue;
    }
    t.equal(r.status, 403, `${origin}: 403`);
    t.equal(r.json.error.code, 'ORIGIN_NOT_ALLOWED');
    t.notOk(r.headers['access-control-allow-origin'], 'no CORS header for it');
  }
});

/** One HTTP request with full control of the method and headers. */
function raw(method: string, path: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${srv.url}${path}`, { method, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('CORS preflight: a listed origin gets the methods and headers (Authorization included); others get nothing', async (t) => {
  const preflight = { 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' };
  const ok = await raw('OPTIONS', '/v1/tasks', { origin: APP, ...preflight });
  t.equal(ok.status, 204, 'answered without a key (a preflight carries none)');
  t.equal(ok.headers['access-control-allow-origin'], APP, 'the origin is echoed');
  t.match(String(ok.headers['access-control-allow-methods']), /GET.*POST.*DELETE/);
  t.match(String(ok.headers['access-control-allow-headers']), /Authorization/);
  t.match(String(ok.headers['access-control-allow-headers']), /Content-Type/);
  t.notOk(ok.headers['access-control-allow-credentials'], 'no credentials mode: keys are not cookies');
  t.equal(ok.text, '');
  const stream = await raw('OPTIONS', `/v1/tasks/${task.id}`, { origin: APP, 'access-control-request-method': 'GET' });
  t.equal(stream.status, 204, 'any API path');

  const foreign = await raw('OPTIONS', '/v1/tasks', { origin: 'https://evil.test', ...preflight });
  t.equal(foreign.status, 403, 'a foreign origin is refused by the Origin check');
  t.notOk(foreign.headers['access-control-allow-origin'], 'with no CORS header');
  t.notOk(foreign.headers['access-control-allow-methods']);
  const noPreflight = await raw('OPTIONS', '/v1/tasks', { origin: APP });
  t.equal(noPreflight.status, 401, 'OPTIONS without Access-Control-Request-Method is no preflight: it needs a key like any request');
});

t.test('CORS on responses: Access-Control-Allow-Origin echoes listed origins only, errors included', async (t) => {
  const listed = await api(srv.url, 'GET', `/v1/tasks/${task.id}`, undefined, { ...auth, origin: APP });
  t.equal(listed.status, 200);
  t.equal(listed.headers.get('access-control-allow-origin'), APP);
  t.match(listed.headers.get('access-control-expose-headers'), /Retry-After/);
  t.match(listed.headers.get('vary'), /Origin/);
  const refused = await api(srv.url, 'GET', `/v1/tasks/${task.id}`, undefined, { origin: APP });
  t.equal(refused.status, 401);
  t.equal(refused.headers.get('access-control-allow-origin'), APP, 'the page can read the 401 error');
  const own = await api(srv.url, 'GET', `/v1/tasks/${task.id}`, undefined, { ...auth, origin: srv.url });
  t.equal(own.status, 200, "the server's own origin is allowed");
  t.equal(own.headers.get('access-control-allow-origin'), null, 'and needs no CORS header');
  const none = await api(srv.url, 'GET', `/v1/tasks/${task.id}`, undefined, auth);
  t.equal(none.headers.get('access-control-allow-origin'), null, 'no Origin, no CORS header');
  const foreign = await api(srv.url, 'GET', `/v1/tasks/${task.id}`, undefined, { ...auth, origin: 'https://evil.test' });
  t.equal(foreign.status, 403);
  t.equal(foreign.headers.get('access-control-allow-origin'), null);
});

t.test('the database key used here is recorded as used', async (t) => {
  t.ok(store.get(record.id)!.lastUsedAt, 'last used is set');
});
