import t, { type Test } from 'tap';
import { buildTestApp } from '../helpers/app.js';
import { FakeEngine } from '../helpers/fake-engine.js';

// The HTTP validation of task submissions and lookups, through the real app on a fake engine
// and in-memory ports (app.inject): none of these checks needs a container.
const PYTHON = 'sandboxshift/runtime-python:3.11';
const srv = await buildTestApp({
  engine: new FakeEngine({ [PYTHON]: {} }),
  config: {
    requests: { bodyBytes: 64 * 1024 },
    images: {
      languages: {
        python: { image: PYTHON, build: 'bash images/offline/build-python.sh' },
        node: { image: 'localhost/sandboxshift-test/missing:0', build: 'make -C images build-node' },
      },
      multi: null,
      default: 'python',
      markers: { 'requirements.txt': 'python', 'package.json': 'node' },
    },
  },
});
t.teardown(() => srv.close());

/** One request through app.inject(); a string body is sent as is, anything else as JSON. */
async function call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await srv.app.inject({
    method: method as 'GET',
    url,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  let json: any = null;
  try {
    json = JSON.parse(res.body);
  } catch {
    json = null;
  }
  return { status: res.statusCode, headers: res.headers, json };
}

const taskCount = async () => (await call('GET', '/v1/tasks?limit=100')).json.tasks.length;
const workspaceCount = () => srv.store.listWorkspaces().length;

async function refused(t: Test, body: unknown, status: number, code: string, headers: Record<string, string> = {}) {
  const tasks = await taskCount();
  const workspaces = workspaceCount();
  const r = await call('POST', '/v1/tasks', body, headers);
  t.equal(r.status, status, `status ${status} for ${code}`);
  t.equal(r.json?.error?.code, code);
  t.type(r.json?.error?.message, 'string');
  t.equal(await taskCount(), tasks, 'no task created');
  t.equal(workspaceCount(), workspaces, 'no workspace created');
  return r.json?.error;
}

t.test('malformed and schema-failing bodies: 400 naming the field', async (t) => {
  await refused(t, '{"command": ', 400, 'MALFORMED_JSON');
  let e = await refused(t, {}, 400, 'VALIDATION_FAILED');
  t.match(e.details.issues, [{ path: 'command' }]);
  e = await refused(t, { command: 'true', bogus: 1 }, 400, 'VALIDATION_FAILED');
  t.match(JSON.stringify(e.details), /bogus/, 'unknown fields are named');
  e = await refused(t, { command: 'true', resources: { memoryMb: -5 } }, 400, 'VALIDATION_FAILED');
  t.match(e.details.issues, [{ path: 'resources.memoryMb' }]);
  await refused(t, { command: 'true', timeoutSeconds: 1.5 }, 400, 'VALIDATION_FAILED');
  await refused(t, { command: '' }, 400, 'VALIDATION_FAILED');
  await refused(t, { command: 'echo a\u0000b' }, 400, 'VALIDATION_FAILED');
  await refused(t, '{"command": "true", "env": {"__proto__": {"x": "1"}}}', 400, 'MALFORMED_JSON');
  await refused(t, { command: 'true', env: { 'BAD-NAME': 'x' } }, 400, 'VALIDATION_FAILED');
  await refused(t, { command: 'true', env: { HOME: '/root' } }, 400, 'VALIDATION_FAILED');
  await refused(t, { command: 'true', stdin: 'yes' }, 400, 'VALIDATION_FAILED');
  await refused(t, [], 400, 'VALIDATION_FAILED');
});

t.test('limits above the server maximum: 422 naming the field and bound', async (t) => {
  let e = await refused(t, { command: 'true', timeoutSeconds: 3601 }, 422, 'LIMIT_ABOVE_MAXIMUM');
  t.match(e.details, { field: 'timeoutSeconds', value: 3601, maximum: 3600 });
  e = await refused(t, { command: 'true', timeoutSeconds: 10 ** 9 }, 422, 'LIMIT_ABOVE_MAXIMUM');
  t.match(e.details, { field: 'timeoutSeconds', value: 10 ** 9, maximum: 3600 });
  e = await refused(t, { command: 'true', resources: { memoryMb: 8192 } }, 422, 'LIMIT_ABOVE_MAXIMUM');
  t.match(e.details, { field: 'resources.memoryMb', maximum: 4096 });
  e = await refused(t, { command: 'true', resources: { cpus: 3 } }, 422, 'LIMIT_ABOVE_MAXIMUM');
  t.match(e.details, { field: 'resources.cpus', maximum: 2 });
  e = await refused(t, { command: 'true', resources: { pids: 5000 } }, 422, 'LIMIT_ABOVE_MAXIMUM');
  t.match(e.details, { field: 'resources.pids', maximum: 1024 });
});

t.test('size limits and media types', async (t) => {
  const e = await refused(t, { command: 'x'.repeat(70 * 1024) }, 413, 'BODY_TOO_LARGE');
  t.ok(e);
  await refused(t, 'command=true', 415, 'UNSUPPORTED_MEDIA_TYPE', { 'content-type': 'text/plain' });
  const files: Record<string, string> = {};
  for (let i = 0; i < 5; i++) files[`f${i}`] = 'y'.repeat(10);
  await refused(t, { command: 'true', workspace: { files: { '../escape': 'x' } } }, 422, 'WORKSPACE_PATH_ESCAPE');
  await refused(t, { command: 'true', workspace: { files: { '/etc/passwd': 'x' } } }, 422, 'WORKSPACE_PATH_ESCAPE');
  await refused(t, { command: 'true', workspace: { files: { 'a//b': 'x' } } }, 422, 'WORKSPACE_PATH_INVALID');
  await refused(t, { command: 'true', workspace: { files: { 'a\u0000b': 'x' } } }, 422, 'WORKSPACE_PATH_INVALID');
  await refused(t, { command: 'true', workspace: { files: { a: 'x', 'a/b': 'y' } } }, 422, 'WORKSPACE_PATH_INVALID');
  await refused(t, { command: 'true', workspace: { files: { [Array(70).fill('d').join('/')]: 'x' } } }, 413, 'WORKSPACE_PATH_TOO_DEEP');
  await refused(t, { command: 'true', workspace: { id: 'ws_doesnotexist' } }, 404, 'WORKSPACE_NOT_FOUND');
});

t.test('images: unknown, missing (with its build command) and ambiguous', async (t) => {
  await refused(t, { command: 'true', image: 'alpine:latest' }, 422, 'IMAGE_UNKNOWN');
  const e = await refused(t, { command: 'true', workspace: { files: { 'package.json': '{}' } } }, 422, 'IMAGE_MISSING');
  t.match(e.details, { image: 'localhost/sandboxshift-test/missing:0', build: 'make -C images build-node' });
  t.match(e.message, /make -C images build-node/);
  const amb = await refused(t, { command: 'true', workspace: { files: { 'package.json': '{}', 'requirements.txt': '' } } }, 422, 'IMAGE_AMBIGUOUS');
  t.same(amb.details.markers, ['package.json', 'requirements.txt']);
  const ok = await call('POST', '/v1/tasks', { command: 'true', workspace: { files: { 'requirements.txt': '' } } });
  t.equal(ok.status, 202);
  t.same(ok.json.image, { name: 'sandboxshift/runtime-python:3.11', markers: ['requirements.txt'] }, 'markers are recorded');
  const explicit = await call('POST', '/v1/tasks', {
    command: 'true',
    image: 'sandboxshift/runtime-python:3.11',
    workspace: { files: { 'package.json': '{}', 'requirements.txt': '' } },
  });
  t.equal(explicit.status, 202, 'an explicit image resolves ambiguity');
});

t.test('egress allowlist entries: malformed, IP literals and over-broad patterns are refused', async (t) => {
  await refused(t, { command: 'true', network: { allow: ['not a host'] } }, 400, 'EGRESS_PATTERN_INVALID');
  await refused(t, { command: 'true', network: { allow: ['10.0.0.1'] } }, 400, 'EGRESS_PATTERN_INVALID');
  await refused(t, { command: 'true', network: { allow: ['*.co.uk'] } }, 422, 'EGRESS_PATTERN_TOO_BROAD');
  await refused(t, { command: 'true', network: { allow: ['*'] } }, 422, 'EGRESS_PATTERN_TOO_BROAD');
});

t.test('unknown ids, routes and bad queries', async (t) => {
  for (const path of ['/v1/tasks/tsk_nope', '/v1/tasks/../../etc', '/v1/tasks/tsk_nope/logs', '/v1/workspaces/ws_nope', '/v1/tasks/%zz']) {
    const r = await call('GET', path);
    t.equal(r.status, 404, path);
    t.match(r.json.error.code, /^(TASK_NOT_FOUND|WORKSPACE_NOT_FOUND|NOT_FOUND)$/);
  }
  t.equal((await call('POST', '/v1/tasks/tsk_nope/cancel')).json.error.code, 'TASK_NOT_FOUND');
  t.equal((await call('GET', '/v1/nothing')).json.error.code, 'NOT_FOUND');
  for (const q of ['limit=5000', 'limit=101']) {
    const r = await call('GET', `/v1/tasks?${q}`);
    t.equal(r.status, 422, q);
    t.match(r.json.error, { code: 'LIMIT_ABOVE_MAXIMUM', details: { field: 'limit', maximum: 100 } });
  }
  for (const q of ['limit=0', 'limit=x', 'status=weird', 'cursor=%21%21', 'extra=1']) {
    const r = await call('GET', `/v1/tasks?${q}`);
    t.equal(r.status, 400, q);
    t.equal(r.json.error.code, 'VALIDATION_FAILED');
  }
  const logs = await call('GET', '/v1/tasks/tsk_nope/logs?stream=stdin');
  t.equal(logs.status, 400, 'a bad query is checked before the id');
  const status = await srv.app.injectWS('/v1/tasks/tsk_nope/stream', { headers: { host: 'localhost' } }).then(
    (ws) => {
      ws.terminate();
      return 101;
    },
    (err: Error) => Number(/response: (\d+)/.exec(err.message)?.[1] ?? 0),
  );
  t.equal(status, 404, 'the stream of an unknown task is refused before the upgrade');
});
