/**
 * The OpenAPI document against the real server on real Podman:
 *  (a) the routes the running app registered are exactly the routes the document lists;
 *  (b) real requests, good and bad, to every route: each status must be documented for its route,
 *      each JSON body must validate (ajv, draft 2020-12) against the documented schema, each error
 *      code must be in that response's x-error-codes, each WebSocket frame must validate against
 *      the frame schemas, each close code must be documented.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import Ajv2020Module from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { DEFAULT_IMAGES } from '../../src/config/schema.js';
import { ERRORS, type ErrorCode } from '../../src/errors.js';
import { openapiDocument } from '../../src/http/openapi.js';
import { multipartBody, tar } from '../helpers/archives.js';
import { api, submit, waitDone } from '../helpers/client.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const Ajv2020 = Ajv2020Module.default;
const addFormats = addFormatsModule.default;

type Json = Record<string, any>;
const doc = openapiDocument() as Json;

// ---- schema validation --------------------------------------------------------------------------

const BASE = 'https://sandboxshift.invalid/openapi.json';
const absolutize = (v: unknown): any => JSON.parse(JSON.stringify(v).replaceAll('"#/components/schemas/', `"${BASE}#/$defs/`));
const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: BASE, $defs: absolutize(doc.components.schemas) });
const compiled = new Map<string, ReturnType<typeof ajv.compile>>();
function validatorFor(schema: unknown) {
  const key = JSON.stringify(schema);
  let v = compiled.get(key);
  if (!v) compiled.set(key, (v = ajv.compile(absolutize(schema))));
  return v;
}

function validate(t: Test, schema: unknown, value: unknown, label: string): void {
  const v = validatorFor(schema);
  const ok = v(value) as boolean;
  t.ok(ok, `${label}: body matches ${JSON.stringify(schema)}`, ok ? {} : { errors: v.errors, value });
}

const wsSpec = doc.paths['/v1/tasks/{id}/stream'].get['x-websocket'];
const frameSchema = wsSpec.serverFrames;
const errorFrameSchema = wsSpec.errorFrame;

// ---- response checking ----------------------------------------------------------------------------

interface Res {
  status: number;
  contentType: string | null;
  retryAfter?: string | null;
  json: any;
  text: string;
}

const fromFetch = (r: Awaited<ReturnType<typeof api>>): Res => ({
  status: r.status,
  contentType: r.headers.get('content-type'),
  retryAfter: r.headers.get('retry-after'),
  json: r.json,
  text: r.text,
});

/** (method, spec path) pairs that answered with a success status at least once. */
const exercised = new Set<string>();

/**
 * Checks one real response against the document: `specPath` null means an unmatched route.
 * `emptyBodyOk`: the one documented case of an error status with an empty body.
 */
function check(t: Test, method: string, specPath: string | null, res: Res, label: string, opts: { emptyBodyOk?: boolean } = {}): void {
  const where = specPath ? `${method} ${specPath}` : 'x-unmatched-route';
  const responses: Json = specPath ? doc.paths[specPath]?.[method.toLowerCase()]?.responses : doc['x-unmatched-route'].responses;
  t.ok(responses, `${label}: ${where} is in the document`);
  if (!responses) return;
  const r = responses[String(res.status)];
  t.ok(r, `${label}: status ${res.status} is documented for ${where}`, r ? {} : { body: res.text.slice(0, 500) });
  if (!r) return;
  if (res.status < 400) exercised.add(`${method} ${specPath}`);
  if (res.text === '' && opts.emptyBodyOk) return;
  if (r.content) {
    const mediaType = (res.contentType ?? '').split(';')[0]!.trim();
    t.ok(mediaType in r.content, `${label}: content-type ${mediaType} is documented for ${where} ${res.status}`);
    if (mediaType === 'application/json') {
      t.not(res.json, null, `${label}: the body is JSON`);
      validate(t, r.content[mediaType].schema, res.json, `${label} (${where} ${res.status})`);
    }
  }
  if (res.status >= 400 && res.json?.error) {
    const code = res.json.error.code as ErrorCode;
    t.ok((r['x-error-codes'] ?? []).includes(code), `${label}: ${code} is in x-error-codes of ${where} ${res.status}`);
    t.equal(ERRORS[code]?.status, res.status, `${label}: ${code} has status ${res.status} in ERRORS`);
  }
  if (res.status === 429) t.match(res.retryAfter, /^\d+$/, `${label}: 429 carries Retry-After`);
}

async function call(
  t: Test,
  base: string,
  method: string,
  url: string,
  specPath: string | null,
  label: string,
  expect: { status: number; code?: ErrorCode },
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Res> {
  const res = fromFetch(await api(base, method, url, body, headers));
  t.equal(res.status, expect.status, `${label}: status ${expect.status}`, res.status === expect.status ? {} : { body: res.text.slice(0, 500) });
  if (expect.code) t.equal(res.json?.error?.code, expect.code, `${label}: code ${expect.code}`);
  check(t, method, specPath, res, label);
  return res;
}

// ---- WebSocket helpers ------------------------------------------------------------------------------

interface Session {
  ws: WebSocket;
  frames: Json[];
  errors: Json[];
  closed: Promise<number>;
  waitFor(pred: (f: Json) => boolean, what: string): Promise<Json>;
}

/** Opens a WebSocket; resolves with a session, or with the HTTP response refusing the upgrade. */
function openWs(t: Test, url: string): Promise<Session | Res> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const frames: Json[] = [];
    const errors: Json[] = [];
    const waiters: { pred: (f: Json) => boolean; resolve: (f: Json) => void }[] = [];
    const closed = new Promise<number>((res) => ws.on('close', (code) => res(code)));
    ws.on('message', (data, isBinary) => {
      t.notOk(isBinary, 'server frames are text frames');
      const f = JSON.parse(data.toString()) as Json;
      if (f.type === 'error') {
        validate(t, errorFrameSchema, f, `error frame ${f.code}`);
        t.ok(wsSpec.errorFrameCodes.includes(f.code), `error frame code ${f.code} is documented`);
        errors.push(f);
      } else {
        validate(t, frameSchema, f, `frame ${f.seq} (${f.type})`);
        frames.push(f);
      }
      for (const w of [...waiters]) {
        if (w.pred(f)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(f);
        }
      }
    });
    const waitFor = (pred: (f: Json) => boolean, what: string) =>
      new Promise<Json>((res, rej) => {
        const seen = [...frames, ...errors].find(pred);
        if (seen) return res(seen);
        const timer = setTimeout(() => rej(new Error(`timed out waiting for ${what}`)), 60_000);
        waiters.push({ pred, resolve: (f) => (clearTimeout(timer), res(f)) });
      });
    ws.once('open', () => resolve({ ws, frames, errors, closed, waitFor }));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json: any = null;
        try {
          json = JSON.parse(text);
        } catch {
          json = null;
        }
        ws.on('error', () => {});
        ws.terminate();
        resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'] ?? null, json, text });
      });
    });
    ws.once('error', (err) => reject(err));
  });
}

const isSession = (s: Session | Res): s is Session => 'ws' in s;

async function checkClose(t: Test, s: Session, expected: number, label: string): Promise<void> {
  const code = await s.closed;
  t.equal(code, expected, `${label}: close code ${expected}`);
  t.ok(String(code) in wsSpec.closeCodes, `${label}: close code ${code} is documented`);
}

function checkSeqs(t: Test, frames: Json[], label: string, first = 1): void {
  t.same(
    frames.map((f) => f.seq),
    frames.map((_, i) => i + first),
    `${label}: seq increases by one from ${first}`,
  );
}

// ---- the test ---------------------------------------------------------------------------------------

/** Routes registered by the first Fastify instance created while subscribed (the test server's app). */
const registered: string[] = [];
let instances = 0;
const onInit = (message: unknown) => {
  const { fastify } = message as { fastify: { addHook(name: 'onRoute', fn: (r: { method: string | string[]; url: string }) => void): void } };
  if (++instances !== 1) return;
  fastify.addHook('onRoute', (r) => {
    for (const m of Array.isArray(r.method) ? r.method : [r.method]) registered.push(`${m} ${r.url}`);
  });
};

subscribe('fastify.initialization', onInit);
let server: TestServer;
try {
  server = await startTestServer({
    requests: { bodyBytes: 8192, stdinBytes: 16 },
    workspaces: { maxFiles: 5, maxBytes: 1000, maxDepth: 4 },
    // A configured language whose image is never built: IMAGE_MISSING without depending on which
    // runtime images this machine has.
    images: { ...DEFAULT_IMAGES, languages: { ...DEFAULT_IMAGES.languages, absent: { image: 'sandboxshift/runtime-absent:0', build: 'true' } } },
  });
} finally {
  unsubscribe('fastify.initialization', onInit);
}
t.teardown(() => server.close());
const base = server.url;

t.test('(a) the registered routes are exactly the documented ones', async (t) => {
  t.equal(instances, 1, 'one Fastify instance was created by startTestServer');
  // Fastify's trailing wildcard is the document's {path} parameter (GET /v1/workspaces/{id}/files/{path}).
  const toSpec = (route: string) => route.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\/\*$/, '/{path}');
  // GET /ui and GET /ui/* serve the web page's static files (HTML, script, stylesheet), not API
  // operations: they are left out of the document, and their headers are tested on their own.
  const running = new Set(registered.filter((r) => !r.startsWith('HEAD ') && !/^GET \/ui(\/|$)/.test(r)).map(toSpec));
  t.ok(registered.includes('GET /ui/*'), 'the web page is registered (and deliberately undocumented)');
  const documented = new Set<string>();
  for (const [path, item] of Object.entries<Json>(doc.paths)) for (const m of Object.keys(item)) documented.add(`${m.toUpperCase()} ${path}`);
  t.ok(running.size > 0, 'routes were captured');
  for (const r of running) t.ok(documented.has(r), `registered ${r} is documented`);
  for (const r of documented) t.ok(running.has(r), `documented ${r} is registered`);
  t.same([...running].sort(), [...documented].sort());
});

t.test('GET /openapi.json serves exactly openapiDocument()', async (t) => {
  const r = await call(t, base, 'GET', '/openapi.json', '/openapi.json', 'openapi.json', { status: 200 });
  t.same(r.json, openapiDocument());
  t.same(r.json, JSON.parse(JSON.stringify(openapiDocument())), 'byte-for-byte the same JSON content');
});

t.test('operations', async (t) => {
  await call(t, base, 'GET', '/healthz', '/healthz', 'healthz', { status: 200 });
  const ready = fromFetch(await api(base, 'GET', '/readyz'));
  t.ok([200, 503].includes(ready.status), `readyz answers 200 or 503 (got ${ready.status})`);
  check(t, 'GET', '/readyz', ready, 'readyz');
  const foreign = { origin: 'https://evil.test' };
  await call(t, base, 'POST', '/v1/tasks', '/v1/tasks', 'cross-origin submission', { status: 403, code: 'ORIGIN_NOT_ALLOWED' }, { command: 'true' }, foreign);
  await call(t, base, 'GET', '/healthz', '/healthz', 'cross-origin healthz', { status: 403, code: 'ORIGIN_NOT_ALLOWED' }, undefined, foreign);
  await call(t, base, 'GET', '/v1/nope', null, 'cross-origin unknown route', { status: 403, code: 'ORIGIN_NOT_ALLOWED' }, undefined, foreign);
});

t.test('unmatched routes', async (t) => {
  await call(t, base, 'GET', '/v1/nope', null, 'unknown path', { status: 404, code: 'NOT_FOUND' });
  await call(t, base, 'DELETE', '/v1/tasks/tsk_x', null, 'unknown method', { status: 404, code: 'NOT_FOUND' });
});

let wsId = '';
t.test('workspaces', async (t) => {
  const p = '/v1/workspaces';
  const created = await call(t, base, 'POST', p, p, 'create', { status: 201 }, { files: { 'requirements.txt': 'pytest\n', 'src/main.py': 'print(1)\n' } });
  wsId = created.json.id;
  t.same(created.json.image, { name: 'sandboxshift/runtime-python:3.11', markers: ['requirements.txt'] });
  t.equal(created.json.files, 2);
  const both = await call(t, base, 'POST', p, p, 'two languages', { status: 201 }, { files: { 'requirements.txt': '', 'package.json': '{}' } });
  t.same(both.json.image.markers, ['package.json', 'requirements.txt']);
  await call(t, base, 'GET', `/v1/workspaces/${wsId}`, '/v1/workspaces/{id}', 'get', { status: 200 });
  await call(t, base, 'GET', '/v1/workspaces/ws_nope', '/v1/workspaces/{id}', 'unknown id', { status: 404, code: 'WORKSPACE_NOT_FOUND' });
  await call(t, base, 'GET', '/v1/workspaces/garbage', '/v1/workspaces/{id}', 'malformed id', { status: 404, code: 'WORKSPACE_NOT_FOUND' });

  await call(t, base, 'POST', p, p, 'empty object', { status: 400, code: 'VALIDATION_FAILED' }, {});
  await call(t, base, 'POST', p, p, 'unknown field', { status: 400, code: 'VALIDATION_FAILED' }, { files: {}, extra: 1 });
  await call(t, base, 'POST', p, p, 'non-string content', { status: 400, code: 'VALIDATION_FAILED' }, { files: { a: 1 } });
  await call(t, base, 'POST', p, p, 'malformed JSON', { status: 400, code: 'MALFORMED_JSON' }, '{"files":');
  await call(t, base, 'POST', p, p, 'empty JSON body', { status: 400, code: 'MALFORMED_JSON' }, '');
  await call(t, base, 'POST', p, p, 'archive body', { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' }, 'not really a tar', { 'content-type': 'application/x-tar' });
  const tarBody = tar([{ name: 'requirements.txt', data: '' }]).toString('latin1');
  const fromTar = await call(t, base, 'POST', p, p, 'tar archive', { status: 201 }, tarBody, { 'content-type': 'application/x-tar' });
  t.same(fromTar.json.image.markers, ['requirements.txt']);
  await call(t, base, 'POST', p, p, 'archive with a link out', { status: 422, code: 'WORKSPACE_LINK_ESCAPE' }, tar([{ name: 'l', type: '2', linkname: '/etc' }]).toString('latin1'), { 'content-type': 'application/x-tar' });
  await call(t, base, 'POST', p, p, 'truncated archive', { status: 400, code: 'ARCHIVE_CORRUPT' }, tarBody.slice(0, 700), { 'content-type': 'application/x-tar' });
  await call(t, base, 'POST', p, p, 'host path without roots', { status: 404, code: 'HOST_PATH_NOT_FOUND' }, { hostPath: 'x/y' });
  await call(t, base, 'POST', p, p, 'git from a host not allowed', { status: 422, code: 'GIT_HOST_NOT_ALLOWED' }, { git: { url: 'https://example.com/r.git', ref: 'main' } });
  await call(t, base, 'POST', p, p, 'body too large', { status: 413, code: 'BODY_TOO_LARGE' }, { files: { a: 'x'.repeat(9000) } });
  await call(t, base, 'POST', p, p, 'path escape', { status: 422, code: 'WORKSPACE_PATH_ESCAPE' }, { files: { '../x': '' } });
  await call(t, base, 'POST', p, p, 'absolute path', { status: 422, code: 'WORKSPACE_PATH_ESCAPE' }, { files: { '/etc/x': '' } });
  await call(t, base, 'POST', p, p, 'empty segment', { status: 422, code: 'WORKSPACE_PATH_INVALID' }, { files: { 'a//b': '' } });
  await call(t, base, 'POST', p, p, 'file and directory', { status: 422, code: 'WORKSPACE_PATH_INVALID' }, { files: { a: '', 'a/b': '' } });
  await call(t, base, 'POST', p, p, 'too deep', { status: 413, code: 'WORKSPACE_PATH_TOO_DEEP' }, { files: { 'a/b/c/d/e': '' } });
  await call(t, base, 'POST', p, p, 'too many files', { status: 413, code: 'WORKSPACE_TOO_MANY_FILES' }, { files: Object.fromEntries([1, 2, 3, 4, 5, 6].map((i) => [`f${i}`, ''])) });
  await call(t, base, 'POST', p, p, 'too large', { status: 413, code: 'WORKSPACE_TOO_LARGE' }, { files: { big: 'x'.repeat(1500) } });

  // Read-back and delete.
  const arch = '/v1/workspaces/{id}/archive';
  const file = '/v1/workspaces/{id}/files/{path}';
  await call(t, base, 'GET', `/v1/workspaces/${wsId}/archive`, arch, 'archive', { status: 200 });
  await call(t, base, 'GET', '/v1/workspaces/ws_nope/archive', arch, 'archive of unknown', { status: 404, code: 'WORKSPACE_NOT_FOUND' });
  const one = await call(t, base, 'GET', `/v1/workspaces/${wsId}/files/src/main.py`, file, 'one file', { status: 200 });
  t.equal(one.text, 'print(1)\n');
  await call(t, base, 'GET', `/v1/workspaces/${wsId}/files/src/nope.py`, file, 'missing file', { status: 404, code: 'WORKSPACE_FILE_NOT_FOUND' });
  await call(t, base, 'GET', `/v1/workspaces/${wsId}/files/src`, file, 'a directory', { status: 422, code: 'WORKSPACE_FILE_NOT_REGULAR' });
  await call(t, base, 'GET', `/v1/workspaces/${wsId}/files/..%2fx`, file, 'escape', { status: 422, code: 'WORKSPACE_PATH_ESCAPE' });
  await call(t, base, 'GET', '/v1/workspaces/ws_nope/files/a', file, 'file of unknown', { status: 404, code: 'WORKSPACE_NOT_FOUND' });
  const link = await submit(base, { command: 'ln -s /etc/passwd link', workspace: { id: both.json.id } });
  await waitDone(base, link.id);
  await call(t, base, 'GET', `/v1/workspaces/${both.json.id}/files/link`, file, 'a link', { status: 422, code: 'WORKSPACE_FILE_IS_LINK' });
  const del = '/v1/workspaces/{id}';
  const busy = await submit(base, { command: 'sleep 30', workspace: { id: both.json.id }, image: 'sandboxshift/runtime-python:3.11' });
  await call(t, base, 'DELETE', `/v1/workspaces/${both.json.id}`, del, 'delete busy', { status: 409, code: 'WORKSPACE_BUSY' });
  await api(base, 'POST', `/v1/tasks/${busy.id}/cancel`);
  await waitDone(base, busy.id);
  await call(t, base, 'DELETE', `/v1/workspaces/${both.json.id}`, del, 'delete', { status: 204 });
  await call(t, base, 'DELETE', `/v1/workspaces/${both.json.id}`, del, 'delete again', { status: 404, code: 'WORKSPACE_NOT_FOUND' });
});

t.test('task submission refusals', async (t) => {
  const p = '/v1/tasks';
  const bad = (label: string, status: number, code: ErrorCode, body: unknown, headers?: Record<string, string>) =>
    call(t, base, 'POST', p, p, label, { status, code }, body, headers);
  await bad('empty object', 400, 'VALIDATION_FAILED', {});
  await bad('empty command', 400, 'VALIDATION_FAILED', { command: '' });
  await bad('unknown field', 400, 'VALIDATION_FAILED', { command: 'true', bogus: 1 });
  await bad('HOME in env', 400, 'VALIDATION_FAILED', { command: 'true', env: { HOME: '/' } });
  await bad('negative timeout', 400, 'VALIDATION_FAILED', { command: 'true', timeoutSeconds: -1 });
  await bad('malformed JSON', 400, 'MALFORMED_JSON', '{"command": ');
  await bad('empty JSON body', 400, 'MALFORMED_JSON', '');
  await bad('XML', 415, 'UNSUPPORTED_MEDIA_TYPE', '<task/>', { 'content-type': 'application/xml' });
  await bad('multipart without a task part', 400, 'MULTIPART_INVALID', '--x\r\n\r\n--x--\r\n', { 'content-type': 'multipart/form-data; boundary=x' });
  await bad('multipart with a hostile archive', 422, 'WORKSPACE_PATH_ESCAPE', multipartBody({ command: 'true' }, tar([{ name: '../x', data: 'x' }])), { 'content-type': 'multipart/form-data; boundary=sbxboundary' });
  await bad('body too large', 413, 'BODY_TOO_LARGE', { command: `echo ${'x'.repeat(9000)}` });
  await bad('memory above maximum', 422, 'LIMIT_ABOVE_MAXIMUM', { command: 'true', resources: { memoryMb: 8192 } });
  await bad('timeout above maximum', 422, 'LIMIT_ABOVE_MAXIMUM', { command: 'true', timeoutSeconds: 7200 });
  await bad('cpus above maximum', 422, 'LIMIT_ABOVE_MAXIMUM', { command: 'true', resources: { cpus: 8 } });
  await bad('unknown image', 422, 'IMAGE_UNKNOWN', { command: 'true', image: 'alpine:latest' });
  await bad('missing image', 422, 'IMAGE_MISSING', { command: 'true', image: 'sandboxshift/runtime-absent:0' });
  await bad('egress entry invalid', 400, 'EGRESS_PATTERN_INVALID', { command: 'true', network: { allow: ['a b'] } });
  await bad('egress over-broad', 422, 'EGRESS_PATTERN_TOO_BROAD', { command: 'true', network: { allow: ['*.com'] } });
  await bad('unknown workspace', 404, 'WORKSPACE_NOT_FOUND', { command: 'true', workspace: { id: 'ws_nope' } });
  await bad('inline path escape', 422, 'WORKSPACE_PATH_ESCAPE', { command: 'true', workspace: { files: { '../x': '' } } });
  await bad('inline too many files', 413, 'WORKSPACE_TOO_MANY_FILES', { command: 'true', workspace: { files: Object.fromEntries([1, 2, 3, 4, 5, 6].map((i) => [`f${i}`, ''])) } });
});

t.test('queue full and ambiguous images (a second server: no queue, no multi image)', async (t) => {
  const s2 = await startTestServer({ queue: { concurrency: 1, maxQueued: 0, retryAfterSeconds: 7 }, images: { ...DEFAULT_IMAGES, multi: null } });
  t.teardown(() => s2.close());
  const p = '/v1/tasks';
  // The one run slot is taken; with no waiting room the next task is refused.
  const blocker = await call(t, s2.url, 'POST', p, p, 'blocker', { status: 202 }, { command: 'sleep 30', timeoutSeconds: 60 });
  t.teardown(() => api(s2.url, 'POST', `/v1/tasks/${blocker.json.id}/cancel`));
  const full = await call(t, s2.url, 'POST', p, p, 'queue full', { status: 429, code: 'QUEUE_FULL' }, { command: 'true' });
  t.equal(full.retryAfter, '7');
  await call(t, s2.url, 'POST', p, p, 'ambiguous image', { status: 422, code: 'IMAGE_AMBIGUOUS' }, { command: 'true', workspace: { files: { 'requirements.txt': '', 'package.json': '{}' } } });
  const ws = await call(t, s2.url, 'POST', '/v1/workspaces', '/v1/workspaces', 'ambiguous workspace', { status: 201 }, { files: { 'requirements.txt': '', 'package.json': '{}' } });
  t.equal(ws.json.image.name, null, 'image.name is null when the markers need an explicit image');
});

t.test('a tiny task end to end, lists, logs, stream replay', async (t) => {
  const accepted = await call(t, base, 'POST', '/v1/tasks', '/v1/tasks', 'submit echo hi', { status: 202 }, { command: 'echo hi', env: { B: '1', A: '2' } });
  const id: string = accepted.json.id;
  t.equal(accepted.json.status, 'queued');
  await call(t, base, 'GET', `/v1/tasks/${id}`, '/v1/tasks/{id}', 'get while fresh', { status: 200 });
  const done = await waitDone(base, id);
  t.equal(done.status, 'succeeded');
  const got = await call(t, base, 'GET', `/v1/tasks/${id}`, '/v1/tasks/{id}', 'get when done', { status: 200 });
  t.same(got.json.envKeys, ['A', 'B']);
  t.equal(got.json.output.stdoutBytes, 3);

  const failing = await submit(base, { command: 'echo oops >&2; exit 3', workspace: { id: wsId, readonly: true } });
  const failed = await waitDone(base, failing.id);
  t.equal(failed.status, 'failed');
  t.equal(failed.exitCode, 3);
  await call(t, base, 'GET', `/v1/tasks/${failing.id}`, '/v1/tasks/{id}', 'get failed', { status: 200 });

  // Lists and cursors.
  const page1 = await call(t, base, 'GET', '/v1/tasks?limit=1', '/v1/tasks', 'list limit=1', { status: 200 });
  t.equal(page1.json.tasks.length, 1);
  t.type(page1.json.nextCursor, 'string');
  const page2 = await call(t, base, 'GET', `/v1/tasks?limit=1&cursor=${page1.json.nextCursor}`, '/v1/tasks', 'list page 2', { status: 200 });
  t.not(page2.json.tasks[0].id, page1.json.tasks[0].id);
  await call(t, base, 'GET', '/v1/tasks?status=succeeded', '/v1/tasks', 'list by status', { status: 200 });
  await call(t, base, 'GET', '/v1/tasks', '/v1/tasks', 'list', { status: 200 });
  const wsPage = await call(t, base, 'GET', '/v1/workspaces?limit=1', '/v1/workspaces', 'list workspaces', { status: 200 });
  t.equal(wsPage.json.workspaces.length, 1);
  await call(t, base, 'GET', `/v1/workspaces?limit=1&cursor=${wsPage.json.nextCursor}`, '/v1/workspaces', 'list workspaces page 2', { status: 200 });
  await call(t, base, 'GET', '/v1/workspaces?limit=5000', '/v1/workspaces', 'workspace list limit far above the maximum', { status: 422, code: 'LIMIT_ABOVE_MAXIMUM' });
  await call(t, base, 'GET', '/v1/workspaces?cursor=bm9wZQ', '/v1/workspaces', 'workspace list cursor not issued', { status: 400, code: 'VALIDATION_FAILED' });
  const listBad = (label: string, q: string, status: number, code: ErrorCode) => call(t, base, 'GET', `/v1/tasks?${q}`, '/v1/tasks', label, { status, code });
  await listBad('limit far above the maximum', 'limit=5000', 422, 'LIMIT_ABOVE_MAXIMUM');
  await listBad('limit below 1', 'limit=0', 400, 'VALIDATION_FAILED');
  await listBad('limit zero', 'limit=0', 400, 'VALIDATION_FAILED');
  await listBad('limit not a number', 'limit=many', 400, 'VALIDATION_FAILED');
  await listBad('limit above the configured page maximum', 'limit=500', 422, 'LIMIT_ABOVE_MAXIMUM');
  await listBad('bad cursor', 'cursor=bogus', 400, 'VALIDATION_FAILED');
  await listBad('bad status', 'status=done', 400, 'VALIDATION_FAILED');
  await listBad('unknown parameter', 'sort=asc', 400, 'VALIDATION_FAILED');

  const egress = await call(t, base, 'GET', `/v1/tasks/${id}/egress`, '/v1/tasks/{id}/egress', 'egress of a task without an allowlist', { status: 200 });
  t.same(egress.json, { decisions: [], dropped: 0 });
  await call(t, base, 'GET', '/v1/tasks/tsk_nope/egress', '/v1/tasks/{id}/egress', 'egress of an unknown task', { status: 404, code: 'TASK_NOT_FOUND' });
  await call(t, base, 'GET', '/v1/tasks/tsk_nope', '/v1/tasks/{id}', 'unknown task', { status: 404, code: 'TASK_NOT_FOUND' });
  await call(t, base, 'GET', '/v1/tasks/garbage', '/v1/tasks/{id}', 'malformed task id', { status: 404, code: 'TASK_NOT_FOUND' });
  await call(t, base, 'POST', `/v1/tasks/${id}/cancel`, '/v1/tasks/{id}/cancel', 'cancel finished', { status: 409, code: 'TASK_NOT_ACTIVE' });
  await call(t, base, 'POST', '/v1/tasks/tsk_nope/cancel', '/v1/tasks/{id}/cancel', 'cancel unknown', { status: 404, code: 'TASK_NOT_FOUND' });
  await call(t, base, 'POST', `/v1/tasks/${id}/cancel`, '/v1/tasks/{id}/cancel', 'cancel malformed JSON', { status: 400, code: 'MALFORMED_JSON' }, '{');
  await call(t, base, 'POST', `/v1/tasks/${id}/cancel`, '/v1/tasks/{id}/cancel', 'cancel XML', { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' }, '<x/>', { 'content-type': 'application/xml' });
  await call(t, base, 'POST', `/v1/tasks/${id}/cancel`, '/v1/tasks/{id}/cancel', 'cancel huge body', { status: 413, code: 'BODY_TOO_LARGE' }, { pad: 'x'.repeat(9000) });

  // Logs in every format.
  const logs = `/v1/tasks/${id}/logs`;
  const lp = '/v1/tasks/{id}/logs';
  const text = await call(t, base, 'GET', logs, lp, 'logs text', { status: 200 });
  t.equal(text.text, 'hi\n');
  const nd = await call(t, base, 'GET', logs, lp, 'logs ndjson', { status: 200 }, undefined, { accept: 'application/x-ndjson' });
  const ndFrames = nd.text.trimEnd().split('\n').map((l) => JSON.parse(l) as Json);
  const itemSchema = doc.paths[lp].get.responses['200'].content['application/x-ndjson']['x-item-schema'];
  for (const f of ndFrames) validate(t, itemSchema, f, `ndjson frame ${f.seq}`);
  checkSeqs(t, ndFrames, 'ndjson');
  t.same(ndFrames.map((f) => f.type), ['status', 'status', 'stdout', 'exit']);
  const sse = await call(t, base, 'GET', `${logs}?follow=true`, lp, 'logs SSE', { status: 200 }, undefined, { accept: 'text/event-stream' });
  const events = sse.text.split('\n\n').filter(Boolean).map((block) => Object.fromEntries(block.split('\n').map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)])));
  for (const e of events) {
    const f = JSON.parse(e.data!) as Json;
    validate(t, doc.paths[lp].get.responses['200'].content['text/event-stream']['x-item-schema'], f, `SSE frame ${f.seq}`);
    t.equal(e.event, f.type, 'event: is the frame type');
    t.equal(e.id, String(f.seq), 'id: is the seq');
  }
  t.equal(events.length, ndFrames.length);
  const resumed = await call(t, base, 'GET', logs, lp, 'logs SSE Last-Event-ID', { status: 200 }, undefined, { accept: 'text/event-stream', 'last-event-id': '2' });
  t.match(resumed.text, /^event: stdout\nid: 3\n/);
  const raw = await call(t, base, 'GET', `${logs}?stream=stdout`, lp, 'logs stdout bytes', { status: 200 });
  t.equal(raw.text, 'hi\n');
  const rawErr = await call(t, base, 'GET', `/v1/tasks/${failing.id}/logs?stream=stderr`, lp, 'logs stderr bytes', { status: 200 });
  t.equal(rawErr.text, 'oops\n');
  await call(t, base, 'GET', `${logs}?stream=both`, lp, 'logs bad stream', { status: 400, code: 'VALIDATION_FAILED' });
  await call(t, base, 'GET', `${logs}?follow=maybe`, lp, 'logs bad follow', { status: 400, code: 'VALIDATION_FAILED' });
  await call(t, base, 'GET', `${logs}?after=-1`, lp, 'logs bad after', { status: 400, code: 'VALIDATION_FAILED' });
  await call(t, base, 'GET', `${logs}?tail=1`, lp, 'logs unknown parameter', { status: 400, code: 'VALIDATION_FAILED' });
  await call(t, base, 'GET', '/v1/tasks/tsk_nope/logs', lp, 'logs unknown task', { status: 404, code: 'TASK_NOT_FOUND' });

  // The stream route: replay of a finished task, then 1000.
  const sp = '/v1/tasks/{id}/stream';
  const replay = await openWs(t, `${server.wsUrl}/v1/tasks/${id}/stream`);
  t.ok(isSession(replay), 'the upgrade succeeds');
  if (isSession(replay)) {
    exercised.add(`GET ${sp}`);
    await checkClose(t, replay, 1000, 'replay');
    t.same(replay.frames, ndFrames, 'the WebSocket carries the same frames as the ndjson log');
  }
  const after = await openWs(t, `${server.wsUrl}/v1/tasks/${id}/stream?after=2`);
  if (isSession(after)) {
    await checkClose(t, after, 1000, 'replay after=2');
    checkSeqs(t, after.frames, 'after=2', 3);
  } else t.fail('after=2 upgrades');
  for (const [label, url, status, code] of [
    ['stream unknown task', '/v1/tasks/tsk_nope/stream', 404, 'TASK_NOT_FOUND'],
    ['stream bad after', `/v1/tasks/${id}/stream?after=abc`, 400, 'VALIDATION_FAILED'],
    ['stream negative after', `/v1/tasks/${id}/stream?after=-1`, 400, 'VALIDATION_FAILED'],
    ['stream unknown parameter', `/v1/tasks/${id}/stream?from=1`, 400, 'VALIDATION_FAILED'],
  ] as const) {
    const r = await openWs(t, `${server.wsUrl}${url}`);
    t.notOk(isSession(r), `${label}: no socket`);
    if (!isSession(r)) {
      t.equal(r.status, status, `${label}: status ${status}`);
      t.equal(r.json?.error?.code, code, `${label}: code ${code}`);
      check(t, 'GET', sp, r, `${label} (upgrade)`);
    }
    // The same request without an upgrade answers the same JSON error.
    await call(t, base, 'GET', url, sp, `${label} (plain GET)`, { status, code });
  }
  const plain = fromFetch(await api(base, 'GET', `/v1/tasks/${id}/stream`));
  t.equal(plain.status, 404, 'a plain GET on an existing task answers 404');
  check(t, 'GET', sp, plain, 'stream without upgrade', { emptyBodyOk: true });
});

t.test('cancel, client frames, error frames and close codes', async (t) => {
  const sp = '/v1/tasks/{id}/stream';
  // HTTP cancel of a running task; a client frame over 2 MiB closes its socket with 1009.
  const sleeper = await submit(base, { command: 'sleep 30' });
  const big = await openWs(t, `${server.wsUrl}/v1/tasks/${sleeper.id}/stream`);
  if (isSession(big)) {
    await big.waitFor((f) => f.type === 'status' && f.status === 'running', 'running');
    big.ws.send(JSON.stringify({ type: 'stdin', data: 'x'.repeat(3 * 1024 * 1024) }));
    await checkClose(t, big, 1009, 'oversized client frame');
  } else t.fail('upgrade');
  const cancelled = await call(t, base, 'POST', `/v1/tasks/${sleeper.id}/cancel`, '/v1/tasks/{id}/cancel', 'cancel running', { status: 202 });
  t.equal(cancelled.json.id, sleeper.id);
  const end = await waitDone(base, sleeper.id);
  t.equal(end.status, 'cancelled');
  t.equal(end.reason, 'cancelled');
  await call(t, base, 'GET', `/v1/tasks/${sleeper.id}`, '/v1/tasks/{id}', 'get cancelled', { status: 200 });

  // Stdin on a task without stdin, then cancel over the socket.
  const noStdin = await submit(base, { command: 'sleep 30' });
  const s1 = await openWs(t, `${server.wsUrl}/v1/tasks/${noStdin.id}/stream`);
  if (isSession(s1)) {
    await s1.waitFor((f) => f.type === 'status' && f.status === 'running', 'running');
    s1.ws.send(JSON.stringify({ type: 'stdin', data: 'x' }));
    await s1.waitFor((f) => f.type === 'error' && f.code === 'STDIN_NOT_ENABLED', 'STDIN_NOT_ENABLED');
    s1.ws.send(JSON.stringify({ type: 'cancel' }));
    const exit = await s1.waitFor((f) => f.type === 'exit', 'exit');
    t.equal(exit.status, 'cancelled');
    await checkClose(t, s1, 1000, 'cancelled over the socket');
    checkSeqs(t, s1.frames, 'cancelled task');
  } else t.fail('upgrade');

  // A stdin task: bad frames get error frames without seq, then data, a refused over-limit
  // write, eof, and a write after eof.
  const cat = await submit(base, { command: 'cat', stdin: true });
  const s2 = await openWs(t, `${server.wsUrl}/v1/tasks/${cat.id}/stream`);
  if (isSession(s2)) {
    exercised.add(`GET ${sp}`);
    s2.ws.send('{not json');
    await s2.waitFor((f) => f.type === 'error' && f.code === 'MALFORMED_JSON', 'MALFORMED_JSON');
    s2.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    s2.ws.send(JSON.stringify({ type: 'stdin', data: 'x', extra: true }));
    s2.ws.send(JSON.stringify({ type: 'shout' }));
    await s2.waitFor(() => s2.errors.filter((e) => e.code === 'VALIDATION_FAILED').length === 3, 'three VALIDATION_FAILED');
    s2.ws.send(JSON.stringify({ type: 'stdin', data: 'hello\n' }));
    s2.ws.send(JSON.stringify({ type: 'stdin', data: 'y'.repeat(20) }));
    await s2.waitFor((f) => f.type === 'error' && f.code === 'LIMIT_ABOVE_MAXIMUM', 'LIMIT_ABOVE_MAXIMUM');
    s2.ws.send(JSON.stringify({ type: 'stdin', eof: true }));
    s2.ws.send(JSON.stringify({ type: 'stdin', data: 'late' }));
    await s2.waitFor((f) => f.type === 'error' && f.code === 'TASK_NOT_ACTIVE', 'TASK_NOT_ACTIVE');
    const exit = await s2.waitFor((f) => f.type === 'exit', 'exit');
    t.equal(exit.status, 'succeeded');
    await checkClose(t, s2, 1000, 'stdin task');
    checkSeqs(t, s2.frames, 'stdin task');
    t.equal(s2.frames.filter((f) => f.type === 'stdout').map((f) => f.data).join(''), 'hello\n');
    for (const e of s2.errors) t.notOk('seq' in e, `error frame ${e.code} has no seq`);
    const clientSchema = wsSpec.clientFrames;
    for (const f of [{ type: 'stdin', data: 'hello\n' }, { type: 'stdin', eof: true }, { type: 'cancel' }]) validate(t, clientSchema, f, `client frame ${JSON.stringify(f)}`);
    for (const f of [{ type: 'stdin', data: 'x', extra: true }, { type: 'shout' }, { type: 'stdin', eof: false }]) {
      t.notOk(validatorFor(clientSchema)(f), `client frame ${JSON.stringify(f)} is refused by the schema too`);
    }
  } else t.fail('upgrade');
});

t.test('a malformed percent-encoding is answered inside the error envelope (404, before routing)', async (t) => {
  const r = fromFetch(await api(base, 'GET', '/v1/tasks/%zz'));
  t.equal(r.status, 404);
  validate(t, { $ref: '#/components/schemas/Error' }, r.json, 'bad URL');
  t.equal(r.json.error.code, 'NOT_FOUND');
});

t.test('metrics and the audit log after the workload above (a server without keys: admin access)', async (t) => {
  const m = await call(t, base, 'GET', '/metrics', '/metrics', 'metrics', { status: 200 });
  t.match(m.text, /^# HELP sandboxshift_/m);
  const page = await call(t, base, 'GET', '/v1/audit?limit=100', '/v1/audit', 'audit page', { status: 200 });
  t.ok(page.json.records.length > 10, 'records of the tasks and workspaces above');
  for (const e of ['config.loaded', 'task.submitted', 'task.started', 'task.finished', 'workspace.created']) {
    t.ok(page.json.records.some((r: Json) => r.event === e), `${e} is among them`);
  }
  await call(t, base, 'GET', '/v1/audit?event=task.finished&limit=2', '/v1/audit', 'audit filtered', { status: 200 });
  await call(t, base, 'GET', '/v1/audit?limit=5000', '/v1/audit', 'audit limit', { status: 422, code: 'LIMIT_ABOVE_MAXIMUM' });
  await call(t, base, 'GET', '/v1/audit?cursor=zz', '/v1/audit', 'audit cursor', { status: 400, code: 'VALIDATION_FAILED' });
});

t.test('every documented route answered with success at least once', async (t) => {
  for (const [path, item] of Object.entries<Json>(doc.paths)) {
    for (const m of Object.keys(item)) t.ok(exercised.has(`${m.toUpperCase()} ${path}`), `${m.toUpperCase()} ${path} was driven successfully`);
  }
});
