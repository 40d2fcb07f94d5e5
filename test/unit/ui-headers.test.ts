/**
 * The web page's assets over plain HTTP (app.inject on the real app): the security headers on
 * every response under /ui/, no inline script in the page, and /ui/ loading with and without
 * keys configured (a browser cannot send a key on navigation) while the API still needs one.
 */
import { connect, type AddressInfo } from 'node:net';
import t from 'tap';
import { hashKey } from '../../src/auth/keys.js';
import { buildTestApp } from '../helpers/app.js';
import { builtUi } from '../helpers/ui.js';

const KEY = 'ssk_' + 'u'.repeat(32);
const uiDir = await builtUi(t);

const EXPECTED: Record<string, string | RegExp> = {
  'content-security-policy': /^default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self';.*frame-ancestors 'none'$/,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

function checkHeaders(t: Tap.Test, headers: Record<string, unknown>, where: string): void {
  for (const [name, want] of Object.entries(EXPECTED)) {
    const got = headers[name];
    if (typeof want === 'string') t.equal(got, want, `${where}: ${name}`);
    else t.match(got, want, `${where}: ${name}`);
  }
  const csp = String(headers['content-security-policy'] ?? '');
  t.notMatch(csp, /unsafe-eval|script-src[^;]*unsafe-inline/, `${where}: scripts allow neither eval nor inline script`);
}

/** One GET written as is (no client-side normalisation of the path). */
function raw(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (text += d));
    s.on('error', reject);
    s.on('end', () => {
      const head = text.slice(0, text.indexOf('\r\n\r\n'));
      let body = text.slice(head.length + 4);
      if (/transfer-encoding: chunked/i.test(head)) body = body.replace(/^[0-9a-f]+\r\n/i, '').replace(/\r\n0\r\n\r\n$/, '');
      resolve({ status: Number(head.split(' ')[1]), body });
    });
  });
}

for (const withKeys of [false, true]) {
  t.test(withKeys ? 'a server with keys' : 'a server without keys', async (t) => {
    const config = withKeys ? { auth: { keys: [{ id: 'k1', tenant: 'team', role: 'user', sha256: hashKey(KEY) }] } } : {};
    const ta = await buildTestApp({ config, uiDir });
    t.teardown(() => ta.close());
    const get = (url: string, headers: Record<string, string> = {}) => ta.app.inject({ method: 'GET', url, headers });

    const page = await get('/ui/');
    t.equal(page.statusCode, 200, '/ui/ loads without a key');
    t.match(page.headers['content-type'], /^text\/html/);
    checkHeaders(t, page.headers, '/ui/');
    const scripts = [...page.body.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
    t.ok(scripts.length > 0, 'the page loads a script');
    for (const [, attrs, inline] of scripts) {
      t.match(attrs, /\bsrc="app\.js"/, 'every script is an external file of the page');
      t.equal(inline!.trim(), '', 'no inline script');
    }
    t.notMatch(page.body, /\son[a-z]+=/i, 'no inline event handlers');

    for (const [file, type] of [['app.js', /^(application|text)\/javascript/], ['app.css', /^text\/css/]] as const) {
      const r = await get(`/ui/${file}`);
      t.equal(r.statusCode, 200, `/ui/${file} is served`);
      t.match(r.headers['content-type'], type, `${file} content type`);
      checkHeaders(t, r.headers, `/ui/${file}`);
    }
    const js = (await get('/ui/app.js')).body;
    t.notMatch(js, /(?<![\w$.])eval\(|new Function\(/, 'the bundle calls neither eval nor new Function');
    t.match((await get('/ui/app.css')).body, /\.xterm/, "the stylesheet carries xterm's own CSS (from the package, no CDN)");

    const missing = await get('/ui/nope.js');
    t.equal(missing.statusCode, 404, 'a missing asset is 404');
    t.equal(missing.json().error.code, 'NOT_FOUND');
    checkHeaders(t, missing.headers, '/ui/nope.js (404)');

    const bare = await get('/ui');
    t.equal(bare.statusCode, 308, '/ui redirects');
    t.equal(bare.headers.location, '/ui/');

    // Raw requests on a socket (inject would resolve the dot segments before routing).
    await ta.app.listen({ host: '127.0.0.1', port: 0 });
    const port = (ta.app.server.address() as AddressInfo).port;
    for (const path of ['/ui/../v1/tasks', '/ui/%2e%2e/v1/tasks', '/ui/..%2fv1%2ftasks', '/ui/.hidden', '/ui/%2E%2E%2F%2E%2E%2Fpackage.json']) {
      const { status, body } = await raw(port, path);
      t.equal(status, 404, `${path}: 404, never the API or a file outside the page`);
      t.equal(JSON.parse(body).error.code, 'NOT_FOUND', `${path}: NOT_FOUND`);
    }

    const tasks = await get('/v1/tasks');
    if (withKeys) {
      t.equal(tasks.statusCode, 401, 'the API still needs a key');
      t.equal(tasks.json().error.code, 'UNAUTHENTICATED');
      t.equal((await get('/v1/tasks', { authorization: `Bearer ${KEY}` })).statusCode, 200, 'and works with it');
    } else {
      t.equal(tasks.statusCode, 200, 'the API needs no key');
    }
    t.equal(tasks.headers['content-security-policy'], undefined, 'API responses do not carry the page headers');
  });
}
