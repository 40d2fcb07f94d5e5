/**
 * secretEnv stays secret: a task's secret reaches its environment, but the value, printed whole,
 * split across two writes with a pause between, and on stderr, never shows in the WebSocket frames,
 * the logs, the `?stream=` bytes, the task record, the list, the server's log, the container's
 * configuration or any file of the data directory; its encrypted copy is gone once the task ends.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Docker from 'dockerode';
import t from 'tap';
import { multipartBody, tar } from '../helpers/archives.js';
import { api, collectStream, submit, waitDone } from '../helpers/client.js';
import { sleep, taskContainers } from '../helpers/host.js';
import { EXPECTED_STDOUT, filesContaining, leaks, PRINTS, SECRET } from '../helpers/secrets.js';
import { startTestServer } from '../helpers/server.js';

const socketPath = process.env.SANDBOXSHIFT_TEST_SOCKET!;
const docker = new Docker({ socketPath });

t.test('a secret printed whole, split and on stderr is *** everywhere, and stored nowhere in the clear', async (t) => {
  const logLines: string[] = [];
  const logTo = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  });
  const srv = await startTestServer({}, { logTo });
  t.teardown(() => srv.close());

  const { id } = await submit(srv.url, { command: PRINTS, env: { PLAIN: 'visible' }, secretEnv: { TOKEN: SECRET } });
  // While it runs (inside the pause): the container's configuration and the files the server keeps.
  let containerId: string | undefined;
  for (let i = 0; i < 100 && !containerId; i++) {
    [containerId] = await taskContainers(socketPath, id);
    if (!containerId) await sleep(50);
  }
  t.ok(containerId, 'the container exists');
  const inspect = JSON.stringify(await docker.getContainer(containerId!).inspect());
  t.notOk(leaks(inspect), 'podman inspect does not show the value');
  t.notOk(inspect.includes('TOKEN='), 'nor the variable in Env');
  const stored = join(srv.dataDir, 'secrets', `${id}.enc`);
  t.ok(existsSync(stored), 'while the task runs its secrets are kept');
  t.notOk(leaks(readFileSync(stored).toString('latin1')), 'encrypted');
  t.equal(statSync(stored).mode & 0o777, 0o600);
  t.equal(statSync(join(srv.dataDir, 'secrets.key')).mode & 0o777, 0o600, 'the key file is 0600');

  const stream = await collectStream(srv.wsUrl, id);
  const task = await waitDone(srv.url, id);
  t.match(task, { status: 'succeeded', envKeys: ['PLAIN'], secretEnvKeys: ['TOKEN'] });
  const frames = stream.frames;
  const out = (type: string) => frames.filter((f) => f.type === type).map((f) => f.data as string).join('');
  t.equal(out('stdout'), EXPECTED_STDOUT, 'the task had the value; its output shows *** (whole and split)');
  t.equal(out('stderr'), 'err:***\n', 'stderr too');
  t.notOk(leaks(JSON.stringify(frames)), 'no frame holds the value');

  const logs = await api(srv.url, 'GET', `/v1/tasks/${id}/logs`);
  const stdoutBytes = await api(srv.url, 'GET', `/v1/tasks/${id}/logs?stream=stdout`);
  const stderrBytes = await api(srv.url, 'GET', `/v1/tasks/${id}/logs?stream=stderr`);
  t.equal(stdoutBytes.text, EXPECTED_STDOUT, '?stream=stdout bytes');
  t.equal(stderrBytes.text, 'err:***\n', '?stream=stderr bytes');
  t.match(task.output, { stdoutBytes: EXPECTED_STDOUT.length, stderrBytes: 'err:***\n'.length, truncated: false }, 'byte counts are those of the output served');
  const record = await api(srv.url, 'GET', `/v1/tasks/${id}`);
  const list = await api(srv.url, 'GET', '/v1/tasks?limit=10');
  for (const [what, text] of [
    ['GET logs', logs.text],
    ['task record', record.text],
    ['task list', list.text],
  ] as const) {
    t.notOk(leaks(text), `${what} does not hold the value`);
  }
  t.ok(logLines.length > 5, 'the server logged');
  t.notOk(leaks(logLines.join('')), "the server's log does not hold the value");
  t.notOk(existsSync(stored), 'the stored secrets are deleted when the task ends');
  // A cold task's container read a tmpfs file (removed with it); a pre-started one got the
  // secrets with its job line, and no file was written.
  const tmpfsDir = join(srv.services.config.sandbox.secretsDir, srv.services.serverId);
  t.same(existsSync(tmpfsDir) ? readdirSync(tmpfsDir) : [], [], 'and so is any tmpfs file the container read');
  const audit = readFileSync(join(srv.dataDir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  t.match(audit.find((r) => r.event === 'task.submitted' && r.taskId === id), { envNames: ['PLAIN'], secretEnvNames: ['TOKEN'] }, 'the audit log names the secret');
  t.same(filesContaining(srv.dataDir), [], 'no file of the data directory (database, logs, audit log) holds the value');
});

t.test('multipart submissions take secretEnv; refused requests never echo a value', async (t) => {
  const srv = await startTestServer();
  t.teardown(() => srv.close());
  const body = multipartBody({ command: 'cat f.txt; echo " $TOKEN"', secretEnv: { TOKEN: SECRET } }, tar([{ name: 'f.txt', data: `file:${SECRET}` }]));
  const r = await api(srv.url, 'POST', '/v1/tasks', Buffer.from(body, 'latin1'), { 'content-type': 'multipart/form-data; boundary=sbxboundary' });
  t.equal(r.status, 202, r.text);
  const task = await waitDone(srv.url, r.json.id);
  t.match(task, { status: 'succeeded', secretEnvKeys: ['TOKEN'] });
  t.equal((await api(srv.url, 'GET', `/v1/tasks/${r.json.id}/logs`)).text, 'file:*** ***\n', 'masked, from a file of the workspace too');

  const refusals: [unknown, number, string][] = [
    [{ command: 'true', env: { TOKEN: 'a' }, secretEnv: { TOKEN: SECRET } }, 400, 'VALIDATION_FAILED'],
    [{ command: 'true', secretEnv: { HOME: SECRET } }, 400, 'VALIDATION_FAILED'],
    [{ command: 'true', secretEnv: { 'NOT-A-NAME': SECRET } }, 400, 'VALIDATION_FAILED'],
    [{ command: 'true', secretEnv: { TOKEN: SECRET.repeat(300) } }, 422, 'LIMIT_ABOVE_MAXIMUM'],
    [{ command: 'true', secretEnv: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`S${i}`, SECRET])) }, 422, 'LIMIT_ABOVE_MAXIMUM'],
    [`{"command": "true", "secretEnv": {"TOKEN": ${SECRET}}}`, 400, 'MALFORMED_JSON'],
    [`${SECRET}`, 400, 'MALFORMED_JSON'],
  ];
  for (const [req, status, code] of refusals) {
    const res = await api(srv.url, 'POST', '/v1/tasks', req);
    t.match(res, { status, json: { error: { code } } }, `${code} (${status})`);
    t.notOk(leaks(res.text), `the error does not echo the value or part of it: ${res.text}`);
  }
  // A malformed task part sent as a plain field: the JSON parser's message quotes the text it failed on.
  for (const part of [`{"command": "true", "secretEnv": {"TOKEN": ${SECRET}}}`, `{"command": "true", "secretEnv": {"TOKEN": "${SECRET}"} x}`]) {
    const raw = multipartBody({ command: 'true' }, tar([{ name: 'f', data: 'x' }])).replace('{"command":"true"}', part).replace('Content-Type: application/json\r\n', '');
    const res = await api(srv.url, 'POST', '/v1/tasks', Buffer.from(raw, 'latin1'), { 'content-type': 'multipart/form-data; boundary=sbxboundary' });
    t.match(res, { status: 400, json: { error: { code: 'MALFORMED_JSON', details: { part: 'task' } } } });
    t.notOk(leaks(res.text), `the multipart error does not echo the value or part of it: ${res.text}`);
  }
  t.equal((await api(srv.url, 'GET', '/v1/tasks?limit=10')).json.tasks.length, 1, 'nothing was created by the refusals');
  t.same(filesContaining(srv.dataDir), [], 'no file of the data directory (but the workspace) holds the value');
});

t.test('with an allowlist (the relay wraps the wrapper) and with stdin: the secret arrives, the server\'s variables win', async (t) => {
  const srv = await startTestServer({ egress: { testHosts: { 'ok.test': ['127.0.0.1'] }, allowPrivateRanges: ['127.0.0.1/32'], ceiling: ['ok.test'] } });
  t.teardown(() => srv.close());
  const proxied = await submit(srv.url, {
    command: 'echo "$TOKEN $HTTP_PROXY"',
    network: { allow: ['ok.test'] },
    secretEnv: { TOKEN: SECRET, HTTP_PROXY: 'http://evil.example:1' },
  });
  t.match(await waitDone(srv.url, proxied.id), { status: 'succeeded', secretEnvKeys: ['HTTP_PROXY', 'TOKEN'] });
  t.match((await api(srv.url, 'GET', `/v1/tasks/${proxied.id}/logs`)).text, /^\*\*\* http:\/\/127\.0\.0\.1:\d+\n$/, 'masked; the proxy variable is the server\'s');

  const { id } = await submit(srv.url, { command: 'read line; echo "$line/$TOKEN"', stdin: true, secretEnv: { TOKEN: SECRET } });
  const stream = await collectStream(srv.wsUrl, id, {
    onOpen: (ws) => {
      ws.send(JSON.stringify({ type: 'stdin', data: 'typed\n' }));
      ws.send(JSON.stringify({ type: 'stdin', eof: true }));
    },
  });
  t.match(await waitDone(srv.url, id), { status: 'succeeded' });
  t.equal(stream.frames.filter((f) => f.type === 'stdout').map((f) => f.data).join(''), 'typed/***\n', 'stdin is the client\'s alone');
});
