/**
 * Browsers cannot drive the server from another site, and DNS rebinding finds nothing: requests
 * with a foreign Origin (or Sec-Fetch-Site: cross-site) are refused 403 before any work, a Host
 * that does not name the server is refused 421, on every route and on WebSocket upgrades, while
 * the same requests without those headers work. Real server, real Podman, real `ws` client.
 */
import { request } from 'node:http';
import t from 'tap';
import WebSocket from 'ws';
import { multipartBody, tar } from '../helpers/archives.js';
import { api, submit, waitDone } from '../helpers/client.js';
import { startTestServer } from '../helpers/server.js';

const srv = await startTestServer({
  queue: { concurrency: 3 },
  http: { allowedOrigins: ['https://app.example.test'], allowedHosts: ['sbx.example.test'] },
});
t.teardown(() => srv.close());
const port = new URL(srv.url).port;

interface Res {
  status: number;
  json: any;
  text: string;
}

/** One HTTP request with full control of the headers (Host included). */
function raw(method: string, path: string, headers: Record<string, string>, body?: string | Buffer): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(`${srv.url}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json: any = null;
        try {
          json = JSON.parse(text);
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, json, text });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * A WebSocket upgrade with these headers: the HTTP answer when the server refuses it, or the open
 * socket. A socket that opens although it should not is sent stdin at once, as an attacker would.
 */
function upgrade(path: string, headers: Record<string, string>, stdinOnOpen?: string): Promise<{ status: number; json: any } | { ws: WebSocket }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${srv.wsUrl}${path}`, { headers });
    ws.once('open', () => {
      if (stdinOnOpen !== undefined) ws.send(JSON.stringify({ type: 'stdin', data: stdinOnOpen }));
      resolve({ ws });
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        ws.on('error', () => {});
        ws.terminate();
        let json: any = null;
        try {
          json = JSON.parse(text);
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, json });
      });
    });
    ws.once('error', reject);
  });
}

const json = { 'content-type': 'application/json' };
const multipart = { 'content-type': 'multipart/form-data; boundary=sbxboundary' };
const marker = (what: string) => `echo guard-${what}`;
const workspaceTar = tar([{ name: 'requirements.txt', data: '' }]);

/** Commands of every task the server has recorded. */
async function recordedCommands(): Promise<string[]> {
  const r = await api(srv.url, 'GET', '/v1/tasks?limit=100');
  return (r.json.tasks as { command: string }[]).map((x) => x.command);
}

const FOREIGN: [string, Record<string, string>][] = [
  ['Origin https://evil.test', { origin: 'https://evil.test' }],
  ['Origin null', { origin: 'null' }],
  ['Origin http://127.0.0.1.evil.test', { origin: 'http://127.0.0.1.evil.test' }],
  [`Origin http://127.0.0.1.evil.test:PORT`, { origin: `http://127.0.0.1.evil.test:${port}` }],
  ['Sec-Fetch-Site cross-site', { 'sec-fetch-site': 'cross-site' }],
];

t.test('cross-origin submissions, cancels and upgrades are refused 403; the same requests without Origin work', async (t) => {
  // A running task with stdin, and one to cancel, both submitted the normal way.
  const reader = await submit(srv.url, { command: 'cat; echo end-of-input', stdin: true, timeoutSeconds: 120 });
  const sleeper = await submit(srv.url, { command: 'sleep 60', timeoutSeconds: 120 });
  t.teardown(() => api(srv.url, 'POST', `/v1/tasks/${sleeper.id}/cancel`));
  for (let i = 0; i < 300 && (await api(srv.url, 'GET', `/v1/tasks/${sleeper.id}`)).json.status !== 'running'; i++) await new Promise((r) => setTimeout(r, 100));
  const before = await recordedCommands();

  for (const [label, headers] of FOREIGN) {
    const body = multipartBody({ command: marker('multipart-foreign') }, workspaceTar);
    const mp = await raw('POST', '/v1/tasks', { ...headers, ...multipart }, body);
    t.equal(mp.status, 403, `${label}: multipart POST /v1/tasks is 403`, { body: mp.text.slice(0, 300) });
    t.equal(mp.json?.error?.code, 'ORIGIN_NOT_ALLOWED', `${label}: multipart code`);

    const js = await raw('POST', '/v1/tasks', { ...headers, ...json }, JSON.stringify({ command: marker('json-foreign') }));
    t.equal(js.status, 403, `${label}: JSON POST /v1/tasks is 403`);
    t.equal(js.json?.error?.code, 'ORIGIN_NOT_ALLOWED', `${label}: JSON code`);

    const ws = await raw('POST', '/v1/workspaces', { ...headers, 'content-type': 'application/x-tar' }, workspaceTar);
    t.equal(ws.status, 403, `${label}: POST /v1/workspaces is 403`);

    const cancel = await raw('POST', `/v1/tasks/${sleeper.id}/cancel`, headers);
    t.equal(cancel.status, 403, `${label}: cancel is 403`);
    t.equal(cancel.json?.error?.code, 'ORIGIN_NOT_ALLOWED', `${label}: cancel code`);

    const up = await upgrade(`/v1/tasks/${reader.id}/stream`, headers, 'PWNED\n');
    if ('ws' in up) {
      t.fail(`${label}: the WebSocket upgrade was accepted`);
      up.ws.close();
    } else {
      t.equal(up.status, 403, `${label}: the WebSocket upgrade is answered 403, no handshake`);
      t.equal(up.json?.error?.code, 'ORIGIN_NOT_ALLOWED', `${label}: upgrade code`);
    }
  }

  t.same(await recordedCommands(), before, 'no refused request created a task');
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${sleeper.id}`)).json.status, 'running', 'the refused cancels stopped nothing');

  // The same requests without Origin (curl, SDKs) work, and so does the server's own origin.
  const mp = await raw('POST', '/v1/tasks', multipart, multipartBody({ command: marker('multipart-plain') }, workspaceTar));
  t.equal(mp.status, 202, 'multipart POST without Origin is 202', { body: mp.text.slice(0, 300) });
  const js = await raw('POST', '/v1/tasks', json, JSON.stringify({ command: marker('json-plain') }));
  t.equal(js.status, 202, 'JSON POST without Origin is 202');
  const same = await raw('POST', '/v1/tasks', { ...json, origin: srv.url, 'sec-fetch-site': 'same-origin' }, JSON.stringify({ command: marker('json-same-origin') }));
  t.equal(same.status, 202, "JSON POST from the server's own origin is 202");

  const up = await upgrade(`/v1/tasks/${reader.id}/stream`, {});
  t.ok('ws' in up, 'the upgrade without Origin opens');
  if ('ws' in up) {
    const closed = new Promise((r) => up.ws.on('close', r));
    up.ws.send(JSON.stringify({ type: 'stdin', data: 'legit\n' }));
    up.ws.send(JSON.stringify({ type: 'stdin', eof: true }));
    await closed;
  }
  t.equal((await waitDone(srv.url, reader.id)).status, 'succeeded');
  const stdout = await api(srv.url, 'GET', `/v1/tasks/${reader.id}/logs?stream=stdout`);
  t.equal(stdout.text, 'legit\nend-of-input\n', 'the task read only what the accepted socket sent: no stdin from refused upgrades');

  const cancel = await raw('POST', `/v1/tasks/${sleeper.id}/cancel`, {});
  t.equal(cancel.status, 202, 'cancel without Origin is 202');
  t.equal((await waitDone(srv.url, sleeper.id)).status, 'cancelled');
  for (const id of [mp.json.id, js.json.id, same.json.id]) t.equal((await waitDone(srv.url, id)).status, 'succeeded');
  t.same(
    (await recordedCommands()).filter((c) => c.startsWith('echo guard-')).sort(),
    [marker('json-plain'), marker('json-same-origin'), marker('multipart-plain')],
    'exactly the accepted submissions became tasks',
  );
});

t.test('an origin listed in http.allowedOrigins may submit and upgrade, cross-site', async (t) => {
  const headers = { origin: 'https://app.example.test', 'sec-fetch-site': 'cross-site' };
  const js = await raw('POST', '/v1/tasks', { ...headers, ...json }, JSON.stringify({ command: marker('allowed-origin') }));
  t.equal(js.status, 202, 'JSON POST from the allowed origin is 202', { body: js.text.slice(0, 300) });
  const up = await upgrade(`/v1/tasks/${js.json.id}/stream`, headers);
  t.ok('ws' in up, 'the upgrade from the allowed origin opens');
  if ('ws' in up) up.ws.close();
  t.equal((await waitDone(srv.url, js.json.id)).status, 'succeeded');
  const other = await raw('POST', '/v1/tasks', { ...json, origin: 'https://app.example.test.evil.test' }, JSON.stringify({ command: marker('suffix-origin') }));
  t.equal(other.status, 403, 'a name that merely starts with the allowed one is foreign');
});

t.test('a rebinding Host is refused 421 on GETs, POSTs and upgrades; loopback names and allowedHosts work', async (t) => {
  const { id } = await submit(srv.url, { command: 'true' });
  await waitDone(srv.url, id);
  const before = await recordedCommands();
  for (const host of [`evil.test:${port}`, `127.0.0.1.evil.test:${port}`, 'evil.test', `sbx.example.test.evil.test:${port}`]) {
    for (const path of ['/healthz', '/v1/tasks', '/readyz']) {
      const r = await raw('GET', path, { host });
      t.equal(r.status, 421, `Host ${host}: GET ${path} is 421`);
      t.equal(r.json?.error?.code, 'HOST_NOT_ALLOWED', `Host ${host}: GET ${path} code`);
    }
    const post = await raw('POST', '/v1/tasks', { host, ...json, origin: `http://${host}` }, JSON.stringify({ command: marker('rebound') }));
    t.equal(post.status, 421, `Host ${host}: a same-origin POST of the rebinding page is 421`);
    const up = await upgrade(`/v1/tasks/${id}/stream`, { host });
    if ('ws' in up) {
      t.fail(`Host ${host}: the WebSocket upgrade was accepted`);
      up.ws.close();
    } else {
      t.equal(up.status, 421, `Host ${host}: the WebSocket upgrade is answered 421`);
      t.equal(up.json?.error?.code, 'HOST_NOT_ALLOWED', `Host ${host}: upgrade code`);
    }
  }
  t.same(await recordedCommands(), before, 'no refused request created a task');

  for (const host of [`sbx.example.test:${port}`, `localhost:${port}`, `127.0.0.1:${port}`, 'localhost']) {
    t.equal((await raw('GET', '/healthz', { host })).status, 200, `Host ${host}: GET /healthz is 200`);
    t.equal((await raw('GET', '/v1/tasks?limit=1', { host })).status, 200, `Host ${host}: GET /v1/tasks is 200`);
  }
  const up = await upgrade(`/v1/tasks/${id}/stream`, { host: `sbx.example.test:${port}` });
  t.ok('ws' in up, 'an upgrade with an allowedHosts entry opens');
  if ('ws' in up) {
    const closed = new Promise<number>((r) => up.ws.on('close', r));
    t.equal(await closed, 1000, 'and replays the finished task to its end');
  }
});
